#!/usr/bin/env bash
# Create .venv/ in the repo root if missing and install mentalese into it (with optional extras).
# Idempotent: a stamp holding the hash of pyproject.toml skips the install when nothing changed.
#   bash scripts/bootstrap.sh          # runtime dependencies
#   bash scripts/bootstrap.sh test     # plus test dependencies
# torch: machines with an NVIDIA GPU get pip's default (CUDA) build; machines without one get the
# pinned CPU build ${MENTALESE_CPU_TORCH:-torch==2.13.0}, installed before the package so that the
# package's own `torch>=2.4` requirement is already satisfied and never pulls CUDA wheels.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-}"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
  echo "[bootstrap] creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi

STAMP="$VENV/.mentalese-installed${EXTRAS:+-$EXTRAS}"
HASH="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
for done_stamp in "$STAMP" "$VENV/.mentalese-installed-test"; do  # the test install covers the runtime one
  if [ -f "$done_stamp" ] && [ "$(cat "$done_stamp")" = "$HASH" ] && { [ -z "$EXTRAS" ] || [ "$done_stamp" = "$STAMP" ]; }; then
    exit 0
  fi
done

PIP=("$PY" -m pip install --disable-pip-version-check -q)
if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[bootstrap] GPU found: installing torch (CUDA build)"
    "${PIP[@]}" torch
  else
    echo "[bootstrap] no GPU: installing ${MENTALESE_CPU_TORCH:-torch==2.13.0} (CPU build)"
    "${PIP[@]}" "${MENTALESE_CPU_TORCH:-torch==2.13.0}"
  fi
fi
echo "[bootstrap] installing mentalese${EXTRAS:+[$EXTRAS]} into $VENV"
"${PIP[@]}" -e "$ROOT${EXTRAS:+[$EXTRAS]}"
echo "$HASH" > "$STAMP"

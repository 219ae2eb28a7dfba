#!/usr/bin/env bash
# The CODI paper's comparison (docs/comparison.md): set up .venv if needed, train every row for seeds
# 0, 1, 2 in three parallel one-thread processes (logs: runs/compare/seed<S>.log), then write the combined
# runs/compare/report.md. Extra args are overrides for every process (e.g. output_dir=...). A rerun reuses
# every finished row (result.json) and trains only what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
OUT=runs/compare
for arg in "$@"; do [[ "$arg" == output_dir=* ]] && OUT="${arg#output_dir=}"; done
mkdir -p "$OUT"
pids=()
for seed in 0 1 2; do
  "$ROOT/.venv/bin/mentalese" demo compare output_dir="$OUT" threads=1 "$@" "seeds=[$seed]" \
    > "$OUT/seed$seed.log" 2>&1 &
  pids+=($!)
  echo "[compare] seed $seed: pid $! -> $OUT/seed$seed.log"
done
status=0
for i in 0 1 2; do
  if ! wait "${pids[$i]}"; then echo "[compare] seed $i failed: tail $OUT/seed$i.log" >&2; status=1; fi
done
[ "$status" -eq 0 ] || exit "$status"
exec "$ROOT/.venv/bin/mentalese" demo compare output_dir="$OUT" threads=1 "$@" "seeds=[0,1,2]"

#!/usr/bin/env bash
# The test suite: set up .venv with test extras if needed, then run pytest (extra args go to pytest).
# Benchmark files are read from MENTALESE_DATA_DIR, by default ../shared/data beside the repo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh" test
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"

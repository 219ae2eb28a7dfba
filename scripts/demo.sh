#!/usr/bin/env bash
# The main job: set up .venv if needed, then run `mentalese demo` (extra args are config overrides).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/mentalese" demo "$@"

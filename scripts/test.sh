#!/usr/bin/env bash
# Set up the project if needed, then run the type check and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/mypy
exec .venv/bin/pytest "$@"

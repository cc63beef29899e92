#!/usr/bin/env bash
# Set up the project if needed, then run the demo on sample data against loopback servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/segment-bot demo "$@"

#!/usr/bin/env bash
# Run the test suite (sets up .venv on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# Build the study on the toy model (sets up .venv on first use).
# Until the notebooks land this runs the smoke check: score the toy POPE set, print accuracy and ECE.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python scripts/smoke.py "$@"

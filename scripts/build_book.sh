#!/usr/bin/env bash
# Build the study's Jupyter Book (sets up .venv on first use): runs every notebook with papermill
# under a parameter profile (default: toy), then jupyter-book with its own execution off.
#   bash scripts/build_book.sh                                # toy model, whole book
#   bash scripts/build_book.sh --only u_curve                 # one notebook + the book
#   PROFILE=llava-1.5-7b bash scripts/build_book.sh           # LLaVA-1.5-7B on a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python scripts/build_book.py --profile "${PROFILE:-toy}" "$@"

#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with paddy (editable) and its test tools, at the
# exact versions of constraints.txt, so every machine tests the same environment. Safe to run again.
# torch and torchvision are pinned here (constraints.txt: 2.14.1 / 0.29.1), not in pyproject.toml: a
# library declares ranges, and an exact pin there would make `pip install` replace the user's own GPU
# torch (Kaggle's CUDA build). They are installed first so pip takes exactly those wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet -c constraints.txt torch torchvision
.venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
echo "paddy installed: activate with 'source .venv/bin/activate' or run .venv/bin/paddy"

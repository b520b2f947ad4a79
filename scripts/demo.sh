#!/usr/bin/env bash
# The main job: set up, then the SoftSRV demo on CPU. Fits a contextual soft prompt on GSM8K train
# questions with the bundled SmolLM2-135M, writes synthetic questions to runs/softsrv-demo/samples.jsonl,
# scores them with MAUVE against the GSM8K test questions (bundled MiniLM features) and draws the map.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
synthtune fit --config configs/softsrv/demo.yaml
synthtune predict --config runs/softsrv-demo/config.yaml \
  --ckpt_path runs/softsrv-demo/checkpoints/last.ckpt --writer.overwrite true
# 48 samples: 8 MAUVE buckets (the default 32 is sized for thousands of samples)
synthtune score mauve --synthetic runs/softsrv-demo/samples.jsonl --reference data/gsm8k/test.jsonl \
  --field text --reference_field question --clusters 8
python scripts/demo_summary.py runs/softsrv-demo/samples.jsonl

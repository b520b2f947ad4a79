#!/usr/bin/env bash
# The main job: set up, then the GSM8K SoftSRV pipeline on CPU (pipelines/gsm8k_softsrv.yaml): fit a contextual
# soft prompt on GSM8K train questions with the bundled SmolLM2-135M, sample synthetic questions, curate,
# decontaminate against the test split, answer them, score them with MAUVE against the GSM8K test questions
# (bundled MiniLM features), and export a Hugging Face dataset with its card and a report, all under
# runs/pipeline-gsm8k-softsrv/. Run it again and every finished stage is skipped; kill it and it resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
synthtune pipeline --config pipelines/gsm8k_softsrv.yaml
python scripts/demo_summary.py runs/pipeline-gsm8k-softsrv

#!/usr/bin/env bash
# Reproduces docs/results/repetition_penalty.md: the demo's SoftSRV prompt (configs/softsrv/demo.yaml: SS_MC, t=8,
# 100 steps on 256 GSM8K train questions, temperature 0.7 / top-p 0.9), 256 samples at each repetition penalty,
# each scored with MAUVE against the 819 GSM8K test questions (k=32 buckets, k-means seeds 0, 1, 2).
#   bash docs/results/repetition_penalty/run.sh            # fit once, then every penalty
#   bash docs/results/repetition_penalty/run.sh 1.0 1.1    # only these penalties (after the fit)
# Every step resumes: the fit continues from its last checkpoint, predict writes only the missing ids, and a
# finished step is skipped. Outputs go to runs/results-repetition-penalty/ (override with R=...).
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
R="${R:-runs/results-repetition-penalty}"
mkdir -p "$R"

if [ ! -f "$R/fit/fit.done" ]; then
  synthtune fit --config configs/softsrv/demo.yaml --trainer.default_root_dir "$R/fit" --ckpt_path last
  touch "$R/fit/fit.done"
fi
for p in "${@:-1.0 1.1 1.2 1.3}"; do
  for q in $p; do
    out="$R/penalty-$q.jsonl"
    [ -f "$out.summary.json" ] || synthtune predict --config "$R/fit/config.yaml" \
      --ckpt_path "$R/fit/checkpoints/last.ckpt" --data.init_args.num_samples 256 \
      --data.init_args.predict_batch_size 64 --model.init_args.repetition_penalty "$q" --writer.output_path "$out"
    [ -f "$R/penalty-$q.mauve.json" ] || synthtune score mauve --synthetic "$out" --reference data/gsm8k/test.jsonl \
      --reference_field question --clusters 32 --seeds 3 --no_plot true
  done
done
python docs/results/repetition_penalty/report.py "$R"

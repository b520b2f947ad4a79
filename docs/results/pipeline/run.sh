#!/usr/bin/env bash
# Reproduces the measured combinations of docs/results/pipeline.md on top of the SS_MC run of
# docs/results/softsrv.md (run that first: bash docs/results/softsrv/run.sh ss-mc). Each combination is what the
# pipeline's stage runs (`contexts:` and `align:` in pipelines/*.yaml), on the same checkpoint and the same
# 500-sample budget, so the only difference from the SS_MC row is the combination itself.
#   bash docs/results/pipeline/run.sh            # jobs gp, mmd and uniform, then the table
#   bash docs/results/pipeline/run.sh gp         # one job
# Jobs:
#   gp   GP-chosen contexts: SoftSRV samples 500 questions from the training contexts in GP max-variance order
#        over E(x) (pipeline stage `contexts`) instead of round-robin (the first 500 contexts);
#   mmd  MMD resampling: SynAlign's MMD weights, learned between SS_MC's 500 samples and the real GSM8K train
#        questions in MiniLM space, resample 500 rows (with replacement) toward the real set (pipeline stage `align`);
#   uniform  the control for mmd: 500 rows drawn uniformly with replacement from the same 500 samples (as many
#        duplicates as resampling makes, without the weights).
# Every job resumes (a finished step is skipped; predict generates only missing ids). Outputs: runs/results-pipeline/.
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
S="${S:-runs/results-softsrv}"   # the SoftSRV comparison's runs
R="${R:-runs/results-pipeline}"
mkdir -p "$R"
[ -f "$S/ss_mc/fit.done" ] || { echo "run docs/results/softsrv/run.sh ss-mc first (needs $S/ss_mc)" >&2; exit 2; }

score() {  # as docs/results/softsrv/run.sh: MAUVE vs all GSM8K test questions, k=32, k-means seeds 0,1,2
  [ -f "${1%.jsonl}.mauve.json" ] || synthtune score mauve --synthetic "$1" --field text \
    --reference data/gsm8k/test.jsonl --reference_field question --clusters 32 --seeds 3
}

gp() {
  mkdir -p "$R/gp"
  [ -f "$R/gp/contexts.json" ] || python - "$S/ss_mc/config.yaml" "$R/gp/contexts.json" <<'PY'
import json, sys
from synthtune.paths import atomic_write_json
from synthtune.pipeline.contexts import gp_context_order
from synthtune.pipeline.stages import compose
order, report = gp_context_order(compose(["fit", "--config", sys.argv[1]]))
atomic_write_json(sys.argv[2], order)
print(json.dumps(report)[:300])
PY
  [ -f "$R/gp/samples.jsonl.summary.json" ] || synthtune predict --config "$S/ss_mc/config.yaml" \
    --ckpt_path "$S/ss_mc/checkpoints/last.ckpt" --data.init_args.context_indices "$R/gp/contexts.json" \
    --trainer.default_root_dir "$R/gp" --writer.output_path "$R/gp/samples.jsonl"
  score "$R/gp/samples.jsonl"
}

mmd() {
  local w="$R/mmd/weights"
  if [ ! -f "$w/fit.done" ]; then
    synthtune fit --config configs/synalign/base_weights.yaml --data.init_args.synthetic "$S/ss_mc/samples.jsonl" \
      --data.init_args.real data/gsm8k/train.jsonl --data.init_args.real_text_field question \
      --data.init_args.batch_syn 500 --data.init_args.batch_real 500 --model.init_args.label_mode blind \
      --model.init_args.resample_output "$R/mmd/resampled.jsonl" --trainer.max_steps 300 \
      --trainer.default_root_dir "$w" --ckpt_path last
    touch "$w/fit.done"
  fi
  [ -f "$R/mmd/resampled.jsonl" ] || synthtune predict --config "$w/config.yaml" --ckpt_path "$w/checkpoints/last.ckpt" \
    --trainer.default_root_dir "$R/mmd/resample" --writer.output_path "$R/mmd/weights.jsonl"
  score "$R/mmd/resampled.jsonl"
}

uniform() {
  mkdir -p "$R/uniform"
  [ -f "$R/uniform/resampled.jsonl" ] || python - "$S/ss_mc/samples.jsonl" "$R/uniform/resampled.jsonl" <<'PY'
import json, os, sys
import numpy as np
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8").read().split("\n") if line.strip()]
picks = np.random.default_rng(0).integers(len(rows), size=len(rows))
with open(sys.argv[2] + ".tmp", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(rows[i], ensure_ascii=False) + "\n" for i in picks)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
print(f"{len(set(picks.tolist()))} distinct rows of {len(rows)}")
PY
  score "$R/uniform/resampled.jsonl"
}

jobs=("$@")
[ ${#jobs[@]} -gt 0 ] || jobs=(gp mmd uniform report)
for job in "${jobs[@]}"; do
  echo "=== $job $(date -u +%FT%TZ)"
  case "$job" in
    gp) gp ;;
    mmd) mmd ;;
    uniform) uniform ;;
    report) python docs/results/pipeline/report.py "$S" "$R" ;;
    *) echo "unknown job $job (jobs: gp mmd uniform report)" >&2; exit 2 ;;
  esac
done

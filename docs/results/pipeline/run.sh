#!/usr/bin/env bash
# Reproduces the measured combinations of docs/results/pipeline.md on top of the SS_MC runs of
# docs/results/softsrv.md (run those first: bash docs/results/softsrv/run.sh ss-mc). Each combination is what the
# pipeline's stage runs (`contexts:` and `align:` in pipelines/*.yaml), on the same checkpoint and the same
# 500-sample budget, so the only difference from the SS_MC row is the combination itself. Every job runs once per
# SS_MC training seed s in SEEDS (default 0 1 2), on that fit's checkpoint and samples.
#   bash docs/results/pipeline/run.sh            # jobs gp, mmd, uniform, controls, then the table
#   bash docs/results/pipeline/run.sh gp         # one job
# Jobs:
#   gp   GP-chosen contexts: SoftSRV samples 500 questions from the training contexts in GP max-variance order
#        over E(x) (pipeline stage `contexts`) instead of round-robin (the first 500 contexts);
#   mmd  MMD resampling: SynAlign's MMD weights, learned between SS_MC's 500 samples and the real GSM8K train
#        questions in MiniLM space, resample 500 rows (with replacement) toward the real set (pipeline stage `align`);
#   uniform  500 rows drawn uniformly with replacement from the same 500 samples (the first control: as much
#        repetition as resampling with replacement makes, but more distinct rows than the MMD draw);
#   controls the controls matched on distinct rows (controls.py): as many distinct rows as the MMD draw, drawn
#        uniformly from all samples, and from only the samples that ended at EOS (the EOS filter), each filled to
#        500 rows by drawing again among them.
# Every set is scored with MiniLM features (the space the MMD weights were fitted in; <stem>.mauve.json) and with
# SmolLM2-135M mean-pooled features (a space they were not fitted in, the paper's App. A.7 features;
# <stem>.mauve-smollm2.json), against the 819 GSM8K test questions, 32 buckets, k-means seeds 0, 1, 2.
# Every job resumes (a finished step is skipped; predict generates only missing ids). Outputs: runs/results-pipeline/.
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
S="${S:-runs/results-softsrv}"   # the SoftSRV comparison's runs
R="${R:-runs/results-pipeline}"
FIGS="${FIGS:-docs/results/pipeline}"   # where report.py writes combinations.png and summary.json
read -r -a SEED_LIST <<< "${SEEDS:-0 1 2}"
mkdir -p "$R"

need_fit() {  # need_fit <seed>: the SS_MC fit and samples of that seed
  [ -f "$S/ss_mc/seed$1/samples.jsonl.summary.json" ] || {
    echo "run SEEDS=$1 docs/results/softsrv/run.sh ss-mc first (needs $S/ss_mc/seed$1)" >&2; exit 2; }
}

score() {  # both featurisers, as docs/results/softsrv/run.sh
  local stem="${1%.jsonl}"
  [ -f "$stem.mauve.json" ] || synthtune score mauve --synthetic "$1" --field text \
    --reference data/gsm8k/test.jsonl --reference_field question --clusters 32 --seeds 3
  [ -f "$stem.mauve-smollm2.json" ] || synthtune score mauve --synthetic "$1" --field text \
    --reference data/gsm8k/test.jsonl --reference_field question --clusters 32 --seeds 3 \
    --featurizer smollm2-135m --output "$stem.mauve-smollm2.json" --no_plot
}

gp() {  # gp <seed>
  local fit="$S/ss_mc/seed$1" dir="$R/seed$1/gp"
  need_fit "$1"
  mkdir -p "$dir"
  [ -f "$dir/contexts.json" ] || python - "$fit/config.yaml" "$dir/contexts.json" <<'PY'
import json, sys
from synthtune.paths import atomic_write_json
from synthtune.pipeline.contexts import gp_context_order
from synthtune.pipeline.stages import compose
order, report = gp_context_order(compose(["fit", "--config", sys.argv[1]]))
atomic_write_json(sys.argv[2], order)
print(json.dumps(report)[:300])
PY
  [ -f "$dir/samples.jsonl.summary.json" ] || synthtune predict --config "$fit/config.yaml" \
    --ckpt_path "$fit/checkpoints/last.ckpt" --data.init_args.context_indices "$dir/contexts.json" \
    --trainer.default_root_dir "$dir" --writer.output_path "$dir/samples.jsonl"
  score "$dir/samples.jsonl"
}

mmd() {  # mmd <seed>
  local fit="$S/ss_mc/seed$1" dir="$R/seed$1/mmd"
  local w="$dir/weights"
  need_fit "$1"
  if [ ! -f "$w/fit.done" ]; then
    synthtune fit --config configs/synalign/base_weights.yaml --data.init_args.synthetic "$fit/samples.jsonl" \
      --data.init_args.real data/gsm8k/train.jsonl --data.init_args.real_text_field question \
      --data.init_args.batch_syn 500 --data.init_args.batch_real 500 --model.init_args.label_mode blind \
      --model.init_args.resample_output "$dir/resampled.jsonl" --trainer.max_steps 300 \
      --trainer.default_root_dir "$w" --ckpt_path last
    touch "$w/fit.done"
  fi
  [ -f "$dir/resampled.jsonl" ] || synthtune predict --config "$w/config.yaml" --ckpt_path "$w/checkpoints/last.ckpt" \
    --trainer.default_root_dir "$dir/resample" --writer.output_path "$dir/weights.jsonl"
  score "$dir/resampled.jsonl"
}

uniform() {  # uniform <seed>
  local dir="$R/seed$1/uniform"
  need_fit "$1"
  mkdir -p "$dir"
  [ -f "$dir/resampled.jsonl" ] || python - "$S/ss_mc/seed$1/samples.jsonl" "$dir/resampled.jsonl" <<'PY'
import json, sys
import numpy as np
from synthtune.paths import atomic_write_jsonl
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8").read().split("\n") if line.strip()]
picks = np.random.default_rng(0).integers(len(rows), size=len(rows))
atomic_write_jsonl(sys.argv[2], [rows[i] for i in picks])
print(f"{len(set(picks.tolist()))} distinct rows of {len(rows)}")
PY
  score "$dir/resampled.jsonl"
}

controls() {  # controls <seed>: as many distinct rows as that seed's MMD draw, uniform and EOS-only
  local dir="$R/seed$1/controls"
  [ -f "$R/seed$1/mmd/resampled.jsonl" ] || mmd "$1"
  [ -f "$dir/controls.json" ] || python docs/results/pipeline/controls.py "$S/ss_mc/seed$1/samples.jsonl" \
    "$R/seed$1/mmd/resampled.jsonl" "$dir" "$1"
  score "$dir/uniform.jsonl"
  score "$dir/eos.jsonl"
}

per_seed() {
  local fn="$1" s
  for s in "${SEED_LIST[@]}"; do "$fn" "$s"; done
}

jobs=("$@")
[ ${#jobs[@]} -gt 0 ] || jobs=(gp mmd uniform controls report)
for job in "${jobs[@]}"; do
  echo "=== $job $(date -u +%FT%TZ)"
  case "$job" in
    gp|mmd|uniform|controls) per_seed "$job" ;;
    report) python docs/results/pipeline/report.py "$S" "$R" "$FIGS" ;;
    *) echo "unknown job $job (jobs: gp mmd uniform controls report)" >&2; exit 2 ;;
  esac
done

#!/usr/bin/env bash
# Reproduces docs/results/synalign.md: SynAlign on SST-2, AG News and Amazon reviews, seeds 0, 1, 2. Per task and
# seed: GP selection of demonstration clusters from a 1,000-row pool, two-stage attribute generation over the
# clusters, label-aware MMD weights, then `synalign evaluate` (logistic regression on MiniLM) on the table's rows.
#   bash docs/results/synalign/run.sh                         # every job, one after another
#   bash docs/results/synalign/run.sh sst2:0 ag_news:0        # only these task:seed jobs (two lanes: split the list)
#   bash docs/results/synalign/run.sh pt-sst2:0               # the same sets scored by prompt tuning instead
# Every job resumes: generation writes only the missing jobs, and a finished step is skipped.
# Outputs go to runs/results-synalign/<task>/seed<seed>/ (override with R=...).
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
R="${R:-runs/results-synalign}"

settings() {  # task -> description, demonstrations (clusters of 4: two to four per label), stage-2 length cap
  case "$1" in
    sst2) DESC="movie review"; BUDGET=32; CAP=96 ;;
    ag_news) DESC="news article"; BUDGET=32; CAP=128 ;;
    amazon_reviews) DESC="product review"; BUDGET=40; CAP=160 ;;
    *) echo "unknown task $1 (sst2, ag_news, amazon_reviews)" >&2; exit 2 ;;
  esac
}

run() {  # run <task> <seed>
  local task="$1" seed="$2" dir="$R/$1/seed$2" sweep=()
  settings "$task"
  mkdir -p "$dir"
  [ "$seed" = 0 ] && sweep=(--tau_sweep '[0.25,0.5,1,2,4]')
  [ -f "$dir/demos.jsonl" ] || synthtune synalign select --task "$task" --pool_limit 1000 --budget "$BUDGET" \
    --cluster_size 4 --tau auto --r auto --seed "$seed" --output "$dir/demos.jsonl" "${sweep[@]}"
  # the same generator budget for every row set: 6 jobs per cluster, 3 examples a job, at most 160 LLM replies
  [ -f "$dir/generate/samples.jsonl.summary.json" ] || synthtune predict --config configs/synalign/base_generate.yaml \
    --model.init_args.task_description "$DESC" --model.init_args.gen_size 3 --model.init_args.count_policy truncate \
    --model.init_args.attribute_max_new_tokens 64 --model.init_args.max_new_tokens "$CAP" --model.init_args.seed "$seed" \
    --data.init_args.path "$dir/demos.jsonl" --data.init_args.task "$task" --data.init_args.rounds 6 \
    --data.init_args.batch_size 16 --trainer.default_root_dir "$dir/generate" --trainer.accelerator cpu
  local W=(--config configs/synalign/demo_weights.yaml --data.init_args.synthetic "$dir/generate/samples.jsonl"
    --data.init_args.real "$dir/demos.jsonl" --trainer.default_root_dir "$dir/weights" --model.init_args.seed "$seed")
  [ -f "$dir/weights/checkpoints/last.ckpt" ] || synthtune fit "${W[@]}"
  [ -f "$dir/weights/resampled.jsonl" ] || synthtune predict "${W[@]}" --ckpt_path "$dir/weights/checkpoints/last.ckpt"
  [ -f "$dir/eval.json" ] || synthtune synalign evaluate --task "$task" --real "$dir/demos.jsonl" \
    --synthetic "$dir/generate/samples.jsonl" --resampled "$dir/weights/resampled.jsonl" --seed "$seed" \
    --projection tsne --output "$dir/eval.json"
}

run_pt() {  # run_pt <task> <seed>: the same training sets, scored by soft-prompt tuning on the frozen LM
  local task="$1" seed="$2" dir="$R/$1/seed$2"
  [ -f "$dir/eval.json" ] || run "$task" "$seed"
  [ -f "$dir/eval_pt.json" ] || synthtune synalign evaluate --task "$task" --real "$dir/demos.jsonl" \
    --synthetic "$dir/generate/samples.jsonl" --resampled "$dir/weights/resampled.jsonl" --seed "$seed" \
    --classifier prompt_tuning --prompt_tuning_config configs/prompt_tuning/demo.yaml --test_limit 200 \
    --output "$dir/eval_pt.json"
}

jobs=("$@")
[ ${#jobs[@]} -gt 0 ] || for t in sst2 ag_news amazon_reviews; do for s in 0 1 2; do jobs+=("$t:$s"); done; done
for job in "${jobs[@]}"; do
  case "$job" in
    report) python docs/results/synalign/report.py "$R" ;;
    pt-*:*) j="${job#pt-}"; run_pt "${j%%:*}" "${j##*:}" ;;
    *:*) run "${job%%:*}" "${job##*:}" ;;
    *) echo "unknown job $job (task:seed, pt-task:seed or report)" >&2; exit 2 ;;
  esac
done

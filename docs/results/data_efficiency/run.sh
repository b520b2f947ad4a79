#!/usr/bin/env bash
# Reproduces docs/results/data_efficiency.md: does synthetic data help, at volume, with a label filter?
#   bash docs/results/data_efficiency/run.sh                        # every job, one after another
#   bash docs/results/data_efficiency/run.sh gen-sst2-eos curve-sst2 # only these jobs (two lanes: split the list)
# Jobs:
#   gen-<task>[-eos|-uniform]  fit a DawGen generator (configs/dawgen/grid_cpu.yaml: 200 steps on the seed-42
#                              16-shot split) and write NUM_PER_LABEL (default 1000) samples per label
#   filter-<task>[-eos|-uniform]  the label-consistency filter (generator likelihood ratio), keep 50 % per label
#   curve-<task>               the data-efficiency grid of the small student (scripts in this folder)
#   report                     tables and figure
# Every job resumes: a fit continues from its last checkpoint, predict writes only the missing ids, the curve
# skips the cells already in its results.jsonl, and a finished step is skipped.
# Outputs go to runs/results-data-efficiency/ (override with R=...).
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
R="${R:-runs/results-data-efficiency}"
N="${NUM_PER_LABEL:-1000}"
HERE=docs/results/data_efficiency
mkdir -p "$R"

gen() {  # gen <task> [uniform|eos]: fit the DawGen generator, then N samples per label
  local task="$1" dir="$R/dawgen-$1${2:+-$2}" extra=()
  [ "${2:-}" = uniform ] && extra=(--model.init_args.weight_mode uniform --model.init_args.lam 0)
  [ "${2:-}" = eos ] && extra=(--model.init_args.pin_eos_weight true)
  [ "$task" = ag_news ] && extra+=(--model.init_args.num_labels 4 --data.init_args.max_length 96
    --model.init_args.max_new_tokens 96)
  if [ ! -f "$dir/fit.done" ]; then
    synthtune fit --config configs/dawgen/grid_cpu.yaml --data.init_args.task "$task" \
      --trainer.default_root_dir "$dir" "${extra[@]}" --ckpt_path last
    touch "$dir/fit.done"
  fi
  [ -f "$dir/samples.jsonl.summary.json" ] || synthtune predict --config "$dir/config.yaml" \
    --ckpt_path "$dir/checkpoints/last.ckpt" --data.init_args.num_per_label "$N" \
    --data.init_args.predict_batch_size 128
}

for job in "${@:-gen-sst2-eos gen-sst2 gen-sst2-uniform curve-sst2 report}"; do
  for j in $job; do
    case "$j" in
      gen-*-uniform) t="${j#gen-}"; gen "${t%-uniform}" uniform ;;
      gen-*-eos) t="${j#gen-}"; gen "${t%-eos}" eos ;;
      gen-*) gen "${j#gen-}" ;;
      *) echo "unknown job $j" >&2; exit 2 ;;
    esac
  done
done

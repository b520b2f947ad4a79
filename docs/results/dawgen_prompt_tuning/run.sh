#!/usr/bin/env bash
# Reproduces docs/results/dawgen_prompt_tuning.md: DawGen generators (learned token weights, and the uniform-weight
# λ = 0 control) on SST-2 and RTE, 256 samples per label scored by the zero-shot classifier, then the prompt-tuning
# grid (synthtune sweep) over seeds 13, 21, 42. The follow-up generator gen-<task>-eos pins Φ_W's EOS weight to 1
# (pin_eos_weight); the sweep of each task in EOS_TASKS (default: sst2) adds its rows.
#   bash docs/results/dawgen_prompt_tuning/run.sh                       # every job, one after another
#   bash docs/results/dawgen_prompt_tuning/run.sh gen-sst2 gen-rte      # only these jobs (two lanes: split the list)
# Jobs: gen-<task>, gen-<task>-uniform and gen-<task>-eos (fit, sample, score on-label accuracy), sweep-<task> (the grid for one task),
# report (table, figure). Every job resumes: a fit continues from its last checkpoint, predict writes only the
# missing ids, the sweep skips the cells already in its results.jsonl, and a finished step is skipped.
# Outputs go to runs/results-dawgen-pt/ (override with R=...).
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
R="${R:-runs/results-dawgen-pt}"
mkdir -p "$R"

gen() {  # gen <task> [uniform|eos]: fit the generator, write 256 samples per label, score them zero-shot
  local task="$1" dir="$R/dawgen-$1${2:+-$2}" extra=()
  [ "${2:-}" = uniform ] && extra=(--model.init_args.weight_mode uniform --model.init_args.lam 0)
  [ "${2:-}" = eos ] && extra=(--model.init_args.pin_eos_weight true)
  if [ ! -f "$dir/fit.done" ]; then
    synthtune fit --config configs/dawgen/grid_cpu.yaml --data.init_args.task "$task" \
      --trainer.default_root_dir "$dir" "${extra[@]}" --ckpt_path last
    touch "$dir/fit.done"
  fi
  [ -f "$dir/samples.jsonl.summary.json" ] || synthtune predict --config "$dir/config.yaml" \
    --ckpt_path "$dir/checkpoints/last.ckpt"
  [ -f "$dir/on_label.json" ] || python docs/results/dawgen_prompt_tuning/on_label.py "$task" "$dir/samples.jsonl" \
    "$dir/on_label.json"
}

# One budget for every trained row: 16 steps of batch 8 (paired: 8 real + 8 synthetic), a 16-token prompt, the dev
# split scored every 4 steps for model selection, the same seeded 300 test rows everywhere.
BUDGET=(--trainer.max_steps 16 --trainer.check_val_every_n_epoch null --trainer.val_check_interval 4
  --data.init_args.test_limit 300)
list() { local IFS=,; echo "[$*]"; }

sweep() {  # sweep <task>: every row of the table over seeds 13, 21, 42 (resumes from <root>/results.jsonl)
  local task="$1" syn="$R/dawgen-$1/samples.jsonl" uni="$R/dawgen-$1-uniform/samples.jsonl"
  local sets="$task=$syn,$task@uniform=$uni" variants="paired/on@uniform"
  if [[ " ${EOS_TASKS:-sst2} " == *" $task "* ]]; then  # the EOS-pinned generator's rows
    sets+=",$task@eos=$R/dawgen-$task-eos/samples.jsonl" variants+=",syn@eos,real+syn@eos,paired/off@eos,paired/on@eos"
  fi
  synthtune sweep --tasks "[$task]" --seeds '[13,21,42]' --root "$R/sweep-$task" \
    --reference '[zero_shot,in_context]' --strategies '[real,syn,real+syn,paired]' --gs '[off,on]' \
    --synthetic "[$sets]" --variants "[$variants]" --baselines '[ft_prompt]' \
    --extra "$(list "${BUDGET[@]}" --model.init_args.prompt_length 16)" \
    --baseline_extra "$(list "${BUDGET[@]}" --model.init_args.lr "${FT_LR:-1e-5}")"
}

for job in "${@:-gen-sst2 gen-sst2-uniform gen-sst2-eos gen-rte gen-rte-uniform sweep-sst2 sweep-rte report}"; do
  for j in $job; do
    case "$j" in
      gen-*-uniform) t="${j#gen-}"; gen "${t%-uniform}" uniform ;;
      gen-*-eos) t="${j#gen-}"; gen "${t%-eos}" eos ;;
      gen-*) gen "${j#gen-}" ;;
      sweep-*) sweep "${j#sweep-}" ;;
      report) python docs/results/dawgen_prompt_tuning/report.py "$R" ;;
      *) echo "unknown job $j (gen-<task>, gen-<task>-uniform, gen-<task>-eos, sweep-<task>, report)" >&2; exit 2 ;;
    esac
  done
done

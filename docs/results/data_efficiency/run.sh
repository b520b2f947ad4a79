#!/usr/bin/env bash
# Reproduces docs/results/data_efficiency.md: does synthetic data help, at volume, with a label filter?
#   bash docs/results/data_efficiency/run.sh                        # every job, one after another
#   bash docs/results/data_efficiency/run.sh gen-sst2-eos curve-sst2 # only these jobs (two lanes: split the list)
# Jobs:
#   gen-<task>[-eos|-uniform]  fit a DawGen generator (configs/dawgen/grid_cpu.yaml: 200 steps on the seed-42
#                              16-shot split) and write NUM_PER_LABEL (default 1000) samples per label
#   filter-<task>[-eos|-uniform]  synthtune filter, keep 50 % per label: by the generator's own likelihood ratio
#                              (kept.jsonl) and by a classifier on the real shots (kept-clf.jsonl), each with
#                              the judge's on-label rates before and after (<kept>.report.json)
#   real-<task>                the curve's real-only cells (they need no synthetic data)
#   curve-<task>[-eos|-uniform]  the curve's synthetic cells on that generator's rows and kept rows
#   prompt-<task>[-eos|-uniform]  the soft-prompt student (prompt tuning + gradient surgery) at k = 16 on the
#                              classifier filter's kept rows and their matched random subset (synthtune sweep)
#   report                     tables and figure (report.py)
# A curve job takes LANE=i/n to run every n-th cell (two lanes for two cores), KS and SEEDS to narrow the grid,
# FILTERS (default "clf gen") to pick the filters whose kept rows it trains on, CONDITIONS (default
# real+syn,real+filtered,real+random,paired+filtered) to run only some of the synthetic conditions.
# GEN_SEED=S (gen-, filter-, curve- jobs) trains and uses the generator of seed S's 16-shot split
# (runs/.../dawgen-<task>[-eos]-s<S>, cells tagged dawgen[-eos]-s<S>); OWN=1 runs each seed's curve cells on its
# own seed's generator (the student, the generator and the filter then see the same real rows; report.py shows
# them as dawgen[-eos]@own, with seed 42's cells taken from the default generator, which is seed 42's).
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
# A new checkout has no runs/: start from the committed state (each generator's config, checkpoint, samples and
# kept rows under state/, the curve's finished cells in results-<task>.jsonl), so a later session resumes the grid
# instead of retraining. Nothing already in $R is overwritten.
for saved in "$HERE"/state/dawgen-*; do  # copied aside, then renamed: two lanes starting at once don't race
  [ -d "$saved" ] && [ ! -e "$R/$(basename "$saved")" ] || continue
  aside="$(mktemp -d "$R/.state.XXXXXX")"
  cp -r "$saved" "$aside/" && { mv -T "$aside/$(basename "$saved")" "$R/$(basename "$saved")" 2>/dev/null || true; }
  rm -rf "$aside"
done
for saved in "$HERE"/results-*.jsonl; do
  [ -f "$saved" ] || continue
  t="$(basename "$saved" .jsonl)"; t="${t#results-}"
  [ -e "$R/curve-$t/results.jsonl" ] || { mkdir -p "$R/curve-$t"; cp "$saved" "$R/curve-$t/results.jsonl"; }
done

gendir() {  # gendir <task> [uniform|eos] [seed]: a generator's folder (the seed-42 split's has no suffix)
  local seed="${3:-42}"
  echo "$R/dawgen-$1${2:+-$2}$([ "$seed" = 42 ] || echo "-s$seed")"
}

gen() {  # gen <task> [uniform|eos]: fit the DawGen generator on the 16-shot split of GEN_SEED (default 42), then
  #                                  N samples per label
  local task="$1" dir extra=(--data.init_args.seed "${GEN_SEED:-42}")
  dir="$(gendir "$1" "${2:-}" "${GEN_SEED:-42}")"
  [ "${2:-}" = uniform ] && extra+=(--model.init_args.weight_mode uniform --model.init_args.lam 0)
  [ "${2:-}" = eos ] && extra+=(--model.init_args.pin_eos_weight true)
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

filt() {  # filt <task> [uniform|eos]: keep half of each label, by the generator's own likelihood ratio (kept.jsonl)
  #                                     and by a classifier trained on the 16 real shots (kept-clf.jsonl); FILTERS
  #                                     (default "clf gen") picks which
  local dir; dir="$(gendir "$1" "${2:-}" "${GEN_SEED:-42}")"
  case " ${FILTERS:-clf gen} " in *" gen "*)
    [ -f "$dir/kept.jsonl" ] || synthtune filter --input "$dir/samples.jsonl" --output "$dir/kept.jsonl" \
      --run "$dir" --scorer generator --keep_fraction 0.5 ;;
  esac
  case " ${FILTERS:-clf gen} " in *" clf "*)
    [ -f "$dir/kept-clf.jsonl" ] || synthtune filter --input "$dir/samples.jsonl" --output "$dir/kept-clf.jsonl" \
      --run "$dir" --scorer classifier --keep_fraction 0.5 ;;
  esac
}

curve() {  # curve <task> [uniform|eos|real]: the small student's cells (resumes from results.jsonl)
  local task="$1" gen="${2:-}" common=(--task "$1" --out "$R/curve-$1/results.jsonl" --lane "${LANE:-0/1}"
    --ks "${KS:-16,4,64,8,32}" --seeds "${SEEDS:-13,21,42,87,100}")
  if [ "$gen" = real ]; then python "$HERE/curve.py" "${common[@]}" --conditions real; return; fi
  if [ -n "${OWN:-}" ]; then  # each seed's cells on the generator trained on that seed's own 16-shot split
    local seed j=0 lane="${LANE:-0/1}"
    for seed in $(echo "${SEEDS:-13,21,87,100}" | tr , ' '); do
      [ "$seed" = 42 ] && continue  # seed 42's own generator is the default one: its cells are under its tag
      # lanes split the seeds (one seed's cells are few, so splitting them would leave a lane idle)
      [ $((j++ % ${lane#*/})) = "${lane%/*}" ] || continue
      LANE=0/1 SEEDS="$seed" OWN= GEN_SEED="$seed" curve "$task" "$gen"
    done
    return 0
  fi
  local dir tag="dawgen${gen:+-$gen}"
  dir="$(gendir "$task" "$gen" "${GEN_SEED:-42}")"
  [ "${GEN_SEED:-42}" = 42 ] || tag="$tag-s$GEN_SEED"
  # every synthetic row (tag dawgen-<gen>), then the filter's kept rows and their controls (tag dawgen-<gen>/<filter>)
  local conditions="${CONDITIONS:-real+syn,real+filtered,real+random,paired+filtered}" picked c
  case ",$conditions," in *,real+syn,*)
    python "$HERE/curve.py" "${common[@]}" --conditions real+syn --synthetic "$dir/samples.jsonl" --tag "$tag" ;;
  esac
  picked=""  # the filter conditions asked for, in CONDITIONS' order
  for c in ${conditions//,/ }; do [ "$c" = real+syn ] || picked="${picked:+$picked,}$c"; done
  [ -n "$picked" ] || return 0
  local filter kept
  for filter in ${FILTERS:-clf gen}; do
    kept="$dir/kept.jsonl"; [ "$filter" = clf ] && kept="$dir/kept-clf.jsonl"
    python "$HERE/curve.py" "${common[@]}" --conditions "$picked" \
      --synthetic "$dir/samples.jsonl" --filtered "$kept" --tag "$tag/$filter"
  done
}

prompt() {  # prompt <task> [uniform|eos]: the soft-prompt student (Guo et al., Alg. 2) at k = 16 on the classifier
  # filter's kept rows: real only, real+filtered (paired batches summed, GS off), real+random (the same on the kept
  # rows' matched random subset) and paired+filtered (GS on); 125 steps of 16 real + 16 synthetic rows (each kept
  # row seen twice), 16 soft tokens, dev scored every 25 steps, the whole test split (resumes from results.jsonl)
  local task="$1" dir="$R/dawgen-$1${2:+-$2}"
  [ -f "$dir/random-clf.jsonl" ] || python - "$task" "$dir/samples.jsonl" "$dir/kept-clf.jsonl" "$dir/random-clf.jsonl" <<'PY'
import json, os, sys
from synthtune.components.students import matched_random_subset
from synthtune.tasks import load_task, read_labeled
task = load_task(sys.argv[1])
rows = matched_random_subset(read_labeled(sys.argv[2], task), read_labeled(sys.argv[3], task), seed=0)
with open(sys.argv[4] + ".tmp", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
os.replace(sys.argv[4] + ".tmp", sys.argv[4])
PY
  synthtune sweep --tasks "[$task]" --seeds "[${SEEDS:-13,21,42,87,100}]" --root "$R/prompt-$task${2:+-$2}" \
    --reference '[]' --strategies '[real,paired]' --gs '[off,on]' \
    --synthetic "[$task=$dir/kept-clf.jsonl,$task@random=$dir/random-clf.jsonl]" --variants '[paired/off@random]' \
    --extra "[--trainer.max_steps,125,--trainer.check_val_every_n_epoch,null,--trainer.val_check_interval,25,--data.init_args.batch_size,16,--model.init_args.prompt_length,16]"
}

for job in "${@:-gen-sst2-eos filter-sst2-eos real-sst2 curve-sst2-eos report}"; do
  for j in $job; do
    case "$j" in
      gen-*-uniform) t="${j#gen-}"; gen "${t%-uniform}" uniform ;;
      gen-*-eos) t="${j#gen-}"; gen "${t%-eos}" eos ;;
      gen-*) gen "${j#gen-}" ;;
      filter-*-uniform) t="${j#filter-}"; filt "${t%-uniform}" uniform ;;
      filter-*-eos) t="${j#filter-}"; filt "${t%-eos}" eos ;;
      filter-*) filt "${j#filter-}" ;;
      real-*) curve "${j#real-}" real ;;
      curve-*-uniform) t="${j#curve-}"; curve "${t%-uniform}" uniform ;;
      curve-*-eos) t="${j#curve-}"; curve "${t%-eos}" eos ;;
      curve-*) curve "${j#curve-}" ;;
      prompt-*-eos) t="${j#prompt-}"; prompt "${t%-eos}" eos ;;
      prompt-*) prompt "${j#prompt-}" ;;
      report) python "$HERE/report.py" "$R" ;;
      *) echo "unknown job $j" >&2; exit 2 ;;
    esac
  done
done

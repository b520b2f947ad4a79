#!/usr/bin/env bash
# Reproduces docs/results/softsrv.md: SoftSRV (SS_NP, SS_MPk k=2, SS_MC) against the PT and PT_SR template
# baselines on GSM8K, 500 questions per run, every row from SEEDS (default 0 1 2) runs, each with its own samples:
#   bash docs/results/softsrv/run.sh                       # every job, one after another (resumable)
#   bash docs/results/softsrv/run.sh ss-np pt real         # only these jobs (two lanes on two cores: split the list)
#   SEEDS="0" bash docs/results/softsrv/run.sh ss-mc       # one seed only
# Jobs (each for every seed s in SEEDS):
#   ss-np ss-mp ss-mc  fit 300 steps with seed s (prompt initialisation and sampling; data, subset and split fixed),
#                      sample 500 questions over the training contexts with seed s, score;
#   pt-temperature     the paper's temperature search (App. A.2: {1, 2, 4}): PT with the paper's templates, 60
#                      requests per temperature (seed 0), each set scored by MAUVE against the GSM8K *train* split
#                      (the test split is not used to choose); the highest MAUVE wins (it rewards quality and
#                      coverage at once: the paper's "balance of diversity and quality"), ties to the lower
#                      temperature; writes pt_temperature/choice.json, which pt and pt_sr use;
#   pt pt_sr           PT (200 requests, then 100 more at a time until the replies hold 500 questions, at most 1,000;
#                      the paper's templates, the chosen temperature, sampling seed s; the first 500 questions) and PT_SR (those questions critiqued and rewritten, Fig. 11, seed s);
#   pt-ours            PT with our earlier templates (template_set synthtune) at temperature 1: the old page's row;
#   real               the ceiling: draw s of 500 real train questions outside SoftSRV's 1,024;
#   pt-cool ss-mc-cool PT and each SS_MC fit sampled at temperature 0.7, top-p 0.9;
#   eos                each finished sample set's rows that ended at EOS, scored again (a diagnostic);
#   downstream         LoRA-tune SmolLM2 on each finished row's 500 questions (tune seed = run seed s; same rows,
#                      steps and seed for every method) and measure NLL per token of the GSM8K test questions;
#                      the untuned model is the floor, the real rows the ceiling (downstream.py);
#   report             the tables and figures (report.py).
# Every scored sample set gets: MAUVE against the 819 test questions with MiniLM (<stem>.mauve.json) and with
# SmolLM2-135M mean-pooled last hidden states, the paper's App. A.7 features (<stem>.mauve-smollm2.json), 32 buckets,
# k-means seeds 0, 1, 2; novelty (<stem>.novelty.json: 13-gram copies of its own context and of SoftSRV's 1,004
# training questions, nearest-neighbour MiniLM cosine to them, distinct rows).
# Every job resumes: a fit continues from its last checkpoint, predict generates only the missing ids, and a
# finished step (its output file exists) is skipped. Outputs go to runs/results-softsrv/ (override with R=...).
# SMOKE=1 runs the same chain at toy size to check it end to end (2 fit steps, 64 samples of 32 tokens, 8 MAUVE
# buckets, 12 PT requests, 5 downstream steps, 50 test questions; figures go to R, not next to this script):
#   SMOKE=1 SEEDS=0 R=/tmp/softsrv-smoke bash docs/results/softsrv/run.sh ss-mc real pt-temperature pt downstream report
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
R="${R:-runs/results-softsrv}"
N=500 CLUSTERS=32 TEMP_REQUESTS=60 FIGS=docs/results/softsrv PT_REQUESTS=200 PT_STEP=100 PT_MAX_REQUESTS=1000
FIT_EXTRA=() SAMPLE_EXTRA=() PT_EXTRA=() DS_EXTRA=() DS_EVAL=()
if [ "${SMOKE:-0}" = 1 ]; then
  N=64 CLUSTERS=8 TEMP_REQUESTS=12 FIGS="$R" PT_REQUESTS=12 PT_STEP=12 PT_MAX_REQUESTS=24
  FIT_EXTRA=(--trainer.max_steps 2)
  SAMPLE_EXTRA=(--data.init_args.num_samples 64 --model.init_args.max_new_tokens 32)
  PT_EXTRA=(--model.init_args.max_new_tokens 160)
  DS_EXTRA=(--steps 5) DS_EVAL=(--eval_limit 50)
fi
read -r -a SEED_LIST <<< "${SEEDS:-0 1 2}"
mkdir -p "$R"

contexts() {  # the 1,004 training questions every SoftSRV fit trains and samples on (row i = context i)
  [ -f "$R/contexts.jsonl" ] || python - "$R/contexts.jsonl" <<'PY'
import json, sys
from synthtune.lightning_cli import compose
from synthtune.curation.label_filter import run_datamodule
from synthtune.paths import atomic_write_jsonl
data = run_datamodule(compose(["fit", "--config", "configs/softsrv/gsm8k_cpu.yaml"]))
data.setup("fit")  # the seeded subset and split of every SoftSRV fit (the data seed does not change with SEEDS)
atomic_write_jsonl(sys.argv[1], [{"index": i, "text": t} for i, t in enumerate(data.train_texts)])
PY
}

score() {  # score <samples.jsonl> <field> [context_key] [contexts.jsonl] [contexts_field]: both MAUVEs and novelty
  local stem="${1%.jsonl}"
  [ -f "$stem.mauve.json" ] || synthtune score mauve --synthetic "$1" --field "$2" \
    --reference data/gsm8k/test.jsonl --reference_field question --clusters "$CLUSTERS" --seeds 3
  [ -f "$stem.mauve-smollm2.json" ] || synthtune score mauve --synthetic "$1" --field "$2" \
    --reference data/gsm8k/test.jsonl --reference_field question --clusters "$CLUSTERS" --seeds 3 \
    --featurizer smollm2-135m --output "$stem.mauve-smollm2.json" --no_plot
  contexts
  if [ ! -f "$stem.novelty.json" ]; then
    if [ $# -ge 4 ]; then
      synthtune score novelty --synthetic "$1" --field "$2" --train "$R/contexts.jsonl" --train_field text \
        --context_key "$3" --contexts "$4" --contexts_field "$5"
    else
      synthtune score novelty --synthetic "$1" --field "$2" --train "$R/contexts.jsonl" --train_field text
    fi
  fi
}

first_n() {  # first_n <in.jsonl> <out.jsonl>: the N rows with the smallest ids (the first N questions)
  python - "$1" "$2" "$N" <<'PY'
import json, sys
from synthtune.paths import atomic_write_jsonl
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8").read().split("\n") if line.strip()]
rows = sorted(rows, key=lambda r: r["id"])[: int(sys.argv[3])]
if len(rows) < int(sys.argv[3]):
    print(f"warning: {sys.argv[1]} holds only {len(rows)} rows", file=sys.stderr)
atomic_write_jsonl(sys.argv[2], rows)
PY
}

softsrv() {  # softsrv <np|mp|mc> <seed>: fit 300 steps, sample 500 questions over the training contexts, score
  local dir="$R/ss_$1/seed$2"
  if [ ! -f "$dir/fit.done" ]; then
    synthtune fit --config configs/softsrv/gsm8k_cpu.yaml --model.init_args.parameterization "$1" \
      --seed_everything "$2" --model.init_args.seed "$2" --trainer.default_root_dir "$dir" --ckpt_path last \
      "${FIT_EXTRA[@]}"
    touch "$dir/fit.done"
  fi
  [ -f "$dir/samples.jsonl.summary.json" ] || synthtune predict --config "$dir/config.yaml" \
    --ckpt_path "$dir/checkpoints/last.ckpt" --data.init_args.predict_batch_size 32 "${SAMPLE_EXTRA[@]}"
  score "$dir/samples.jsonl" text context_index "$R/contexts.jsonl" text
}

pt_run() {  # pt_run <dir> <seed> [predict options...]: PT requests seeded round-robin with train questions; first N
  # Requests are added PT_STEP at a time (predict resumes: only the new requests run) until the replies hold N
  # questions or PT_MAX_REQUESTS is reached; $dir/requests.done holds the request count finished so far.
  local dir="$1" seed="$2" done_req=0 req count
  shift 2
  [ -f "$dir/requests.done" ] && done_req="$(cat "$dir/requests.done")"
  while :; do
    count=0
    [ -f "$dir/samples.jsonl" ] && count="$(grep -c . "$dir/samples.jsonl" || true)"
    [ "$count" -ge "$N" ] && break
    req=$(( done_req == 0 ? PT_REQUESTS : done_req + PT_STEP ))
    if [ "$req" -gt "$PT_MAX_REQUESTS" ]; then
      echo "warning: $dir holds $count questions after $done_req requests (PT_MAX_REQUESTS=$PT_MAX_REQUESTS)" >&2
      break
    fi
    synthtune predict --config configs/template_generation/gsm8k_cpu.yaml --seed_everything "$seed" \
      --model.init_args.seed "$seed" --trainer.default_root_dir "$dir" "$@" "${PT_EXTRA[@]}" \
      --data.init_args.num_requests "$req"
    echo "$req" > "$dir/requests.done"
    done_req="$req"
  done
  [ -f "$dir/first$N.jsonl" ] || first_n "$dir/samples.jsonl" "$dir/first$N.jsonl"
}

pt_temperature() {  # App. A.2's search over {1, 2, 4}, chosen on the train split; writes pt_temperature/choice.json
  local t
  [ -f "$R/pt_temperature/choice.json" ] && return
  for t in 1 2 4; do
    local dir="$R/pt_temperature/t$t"
    [ -f "$dir/samples.jsonl.summary.json" ] || synthtune predict --config configs/template_generation/gsm8k_cpu.yaml \
      --model.init_args.temperature "$t" --trainer.default_root_dir "$dir" "${PT_EXTRA[@]}" \
      --data.init_args.num_requests "$TEMP_REQUESTS"
    # MAUVE with CLUSTERS/2 buckets needs CLUSTERS questions; a temperature whose replies give fewer is not a candidate
    [ -f "$dir/samples.mauve-train.json" ] || [ "$(grep -c . "$dir/samples.jsonl" || true)" -lt "$CLUSTERS" ] || \
      synthtune score mauve --synthetic "$dir/samples.jsonl" --field text --reference data/gsm8k/train.jsonl \
      --reference_field question --clusters "$((CLUSTERS / 2))" --seeds 3 --max_samples 2000 \
      --output "$dir/samples.mauve-train.json" --no_plot
  done
  python docs/results/softsrv/pick_temperature.py "$R/pt_temperature" 1 2 4
}

chosen_temperature() {
  [ -f "$R/pt_temperature/choice.json" ] || pt_temperature
  python -c "import json, sys; print(json.load(open(sys.argv[1]))['temperature'])" "$R/pt_temperature/choice.json"
}

pt() {  # pt <seed>
  local t
  t="$(chosen_temperature)"
  pt_run "$R/pt/seed$1" "$1" --model.init_args.temperature "$t"
  score "$R/pt/seed$1/first$N.jsonl" text example_index data/gsm8k/train.jsonl question
}

pt_sr() {  # pt_sr <seed>: the same PT questions through PT_SR's critique-and-rewrite (refine_pt.py says why a script)
  local t
  t="$(chosen_temperature)"
  [ -f "$R/pt/seed$1/first$N.jsonl" ] || pt "$1"
  [ -f "$R/pt_sr/seed$1/first$N.jsonl" ] || python docs/results/softsrv/refine_pt.py "$R/pt/seed$1/first$N.jsonl" \
    "$R/pt_sr/seed$1/first$N.jsonl" --model.init_args.seed "$1" --model.init_args.temperature "$t"
  score "$R/pt_sr/seed$1/first$N.jsonl" text example_index data/gsm8k/train.jsonl question
}

pt_ours() {  # pt_ours <seed>: our earlier templates at temperature 1 (the page's old PT row), for comparison
  pt_run "$R/pt_ours/seed$1" "$1" --model.init_args.template_set synthtune --model.init_args.temperature 1.0
  score "$R/pt_ours/seed$1/first$N.jsonl" text example_index data/gsm8k/train.jsonl question
}

real() {  # real <seed>: draw s of 500 real train questions outside SoftSRV's 1,024 (its seeded subset)
  mkdir -p "$R/real/seed$1"
  [ -f "$R/real/seed$1/train$N.jsonl" ] || python - "$R/real/seed$1/train$N.jsonl" "$N" "$1" <<'PY'
import json, random, sys
from synthtune.datamodules.text import TextDataModule
from synthtune.paths import atomic_write_jsonl
seen = TextDataModule("data/gsm8k/train.jsonl", "{question}", limit=1024, val_fraction=0.02, max_length=192)
seen.setup("fit")  # the same seeded subset the SoftSRV fits train and sample on
used = set(seen.train_texts) | set(seen.val_texts)
questions = [json.loads(line)["question"] for line in open("data/gsm8k/train.jsonl", encoding="utf-8").read().split("\n") if line.strip()]
unseen = [i for i, q in enumerate(questions) if q not in used]
pick = sorted(random.Random(int(sys.argv[3])).sample(unseen, int(sys.argv[2])))
atomic_write_jsonl(sys.argv[1], [{"id": i, "question": questions[i]} for i in pick])
PY
  score "$R/real/seed$1/train$N.jsonl" question
}

pt_cool() {  # pt_cool <seed>: PT at temperature 0.7, top-p 0.9, the decoding that suits a small model best
  pt_run "$R/pt_cool/seed$1" "$1" --model.init_args.temperature 0.7 --model.init_args.top_p 0.9
  score "$R/pt_cool/seed$1/first$N.jsonl" text example_index data/gsm8k/train.jsonl question
}

ss_mc_cool() {  # ss_mc_cool <seed>: the SS_MC prompt of seed s sampled at the same cooler decoding as pt-cool
  local fit="$R/ss_mc/seed$1" dir="$R/ss_mc_cool/seed$1"
  [ -f "$fit/fit.done" ] || softsrv mc "$1"
  [ -f "$dir/samples.jsonl.summary.json" ] || synthtune predict --config "$fit/config.yaml" \
    --ckpt_path "$fit/checkpoints/last.ckpt" --data.init_args.predict_batch_size 32 \
    --model.init_args.temperature 0.7 --model.init_args.top_p 0.9 --trainer.default_root_dir "$dir" \
    --writer.output_path "$dir/samples.jsonl" "${SAMPLE_EXTRA[@]}"
  score "$dir/samples.jsonl" text context_index "$R/contexts.jsonl" text
}

eos_only() {  # every finished run's samples that ended at EOS (not at the cap), MiniLM MAUVE again: <stem>.eos.jsonl
  local rows
  for rows in "$R"/ss_*/seed*/samples.jsonl "$R"/pt*/seed*/first$N.jsonl; do
    [ -f "${rows%.jsonl}.mauve.json" ] || continue
    [ -f "${rows%.jsonl}.eos.jsonl" ] || python - "$rows" <<'PY'
import json, sys
from synthtune.paths import atomic_write_jsonl
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8").read().split("\n") if line.strip()]
atomic_write_jsonl(sys.argv[1][: -len(".jsonl")] + ".eos.jsonl", [r for r in rows if not r["hit_cap"]])
PY
    local stem="${rows%.jsonl}.eos"
    [ -f "$stem.mauve.json" ] || synthtune score mauve --synthetic "$stem.jsonl" --field text \
      --reference data/gsm8k/test.jsonl --reference_field question --clusters "$CLUSTERS" --seeds 3
  done
}

downstream() {  # every finished run's first 500 questions through downstream.py (tune seed = run seed), and the floor
  local d="$R/downstream" rows name seed
  mkdir -p "$d"
  python docs/results/softsrv/downstream.py --untuned true --output "$d/untuned.json" "${DS_EVAL[@]}"
  for rows in "$R"/ss_*/seed*/samples.jsonl "$R"/pt*/seed*/first$N.jsonl "$R"/real/seed*/train$N.jsonl; do
    [ -f "${rows%.jsonl}.mauve.json" ] || continue
    seed="$(basename "$(dirname "$rows")")"; seed="${seed#seed}"
    name="$(basename "$(dirname "$(dirname "$rows")")")"
    if [ "$(grep -c . "$rows" || true)" -lt "$N" ]; then  # e.g. PT that stopped at PT_MAX_REQUESTS
      echo "warning: $rows holds fewer than $N rows; not tuned on (every method gets the same rows)" >&2
      continue
    fi
    python docs/results/softsrv/downstream.py --train "$rows" --field "$([ "$name" = real ] && echo question || echo text)" \
      --rows "$N" --seed "$seed" --output "$d/$name.seed$seed.json" "${DS_EXTRA[@]}" "${DS_EVAL[@]}"
  done
}

per_seed() {  # per_seed <function> [args...]: the function once for each seed in SEEDS
  local fn="$1" s
  shift
  for s in "${SEED_LIST[@]}"; do "$fn" "$@" "$s"; done
}

all_jobs="ss-np ss-mp ss-mc pt-temperature pt pt_sr real pt-cool ss-mc-cool eos downstream report"
jobs=("$@")
[ ${#jobs[@]} -gt 0 ] || read -r -a jobs <<< "$all_jobs"
for job in "${jobs[@]}"; do
  echo "=== $job $(date -u +%FT%TZ)"
  case "$job" in
    ss-np|ss-mp|ss-mc) per_seed softsrv "${job#ss-}" ;;
    pt-temperature) pt_temperature ;;
    pt) per_seed pt ;;
    pt_sr) per_seed pt_sr ;;
    pt-ours) per_seed pt_ours ;;
    pt-cool) per_seed pt_cool ;;
    ss-mc-cool) per_seed ss_mc_cool ;;
    real) per_seed real ;;
    eos) eos_only ;;
    downstream) downstream ;;
    report) python docs/results/softsrv/report.py "$R" "$FIGS" ;;
    *) echo "unknown job $job (jobs: $all_jobs pt-ours)" >&2; exit 2 ;;
  esac
  echo "=== $job done $(date -u +%FT%TZ)"
done

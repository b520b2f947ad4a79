#!/usr/bin/env bash
# Reproduces docs/results/softsrv.md: SoftSRV (SS_NP, SS_MPk k=2, SS_MC) against the PT and PT_SR
# template baselines on GSM8K, 500 questions each, MAUVE against the 819 GSM8K test questions.
#   bash docs/results/softsrv/run.sh                 # every job, one after another
#   bash docs/results/softsrv/run.sh ss-np pt real   # only these jobs (two lanes on two cores: split the list)
# Jobs: ss-np ss-mp ss-mc pt pt_sr real report, and two rows at cooler decoding (temperature 0.7, top-p 0.9) for
# the template baseline and for SS_MC: pt-cool ss-mc-cool; eos scores each finished row again on only its samples
# that ended at EOS (a diagnostic: how much the samples cut off at the cap cost). Every job resumes: a fit continues from its last
# checkpoint (--ckpt_path last), predict generates only the missing ids, and a finished step is skipped.
# Outputs go to runs/results-softsrv/ (override with R=...).
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
R="${R:-runs/results-softsrv}"
N=500
mkdir -p "$R"

score() {  # score <samples.jsonl> <field>: MAUVE vs all GSM8K test questions, k=32 buckets, k-means seeds 0,1,2
  [ -f "${1%.jsonl}.mauve.json" ] || synthtune score mauve --synthetic "$1" --field "$2" \
    --reference data/gsm8k/test.jsonl --reference_field question --clusters 32 --seeds 3
}

first_n() {  # first_n <in.jsonl> <out.jsonl>: the N rows with the smallest ids (the first N questions)
  python - "$1" "$2" "$N" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8").read().split("\n") if line.strip()]
rows = sorted(rows, key=lambda r: r["id"])[: int(sys.argv[3])]
if len(rows) < int(sys.argv[3]):
    print(f"warning: {sys.argv[1]} holds only {len(rows)} rows", file=sys.stderr)
with open(sys.argv[2] + ".tmp", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
import os; os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
}

softsrv() {  # softsrv <np|mp|mc>: fit 300 steps, sample 500 questions over the training contexts, score
  local dir="$R/ss_$1"
  if [ ! -f "$dir/fit.done" ]; then
    synthtune fit --config configs/softsrv/gsm8k_cpu.yaml --model.init_args.parameterization "$1" \
      --trainer.default_root_dir "$dir" --ckpt_path last
    touch "$dir/fit.done"
  fi
  [ -f "$dir/samples.jsonl.summary.json" ] || synthtune predict --config "$dir/config.yaml" \
    --ckpt_path "$dir/checkpoints/last.ckpt" --data.init_args.predict_batch_size 32
  score "$dir/samples.jsonl" text
}

pt() {  # 200 PT requests seeded round-robin with training questions; the first 500 questions
  local dir="$R/pt"
  [ -f "$dir/samples.jsonl.summary.json" ] || synthtune predict --config configs/template_generation/gsm8k_cpu.yaml \
    --trainer.default_root_dir "$dir"
  [ -f "$dir/first$N.jsonl" ] || first_n "$dir/samples.jsonl" "$dir/first$N.jsonl"
  score "$dir/first$N.jsonl" text
}

pt_sr() {  # the same 500 PT questions through PT_SR's critique-and-rewrite rounds (refine_pt.py says why a script)
  [ -f "$R/pt/first$N.jsonl" ] || pt
  [ -f "$R/pt_sr/first$N.jsonl" ] || python docs/results/softsrv/refine_pt.py "$R/pt/first$N.jsonl" "$R/pt_sr/first$N.jsonl"
  score "$R/pt_sr/first$N.jsonl" text
}

real() {  # the ceiling: 500 real train questions outside SoftSRV's 1,024 (its seeded subset) vs test
  mkdir -p "$R/real"
  [ -f "$R/real/train$N.jsonl" ] || python - "$R/real/train$N.jsonl" "$N" <<'PY'
import json, os, random, sys
from synthtune.datamodules.text import TextDataModule
seen = TextDataModule("data/gsm8k/train.jsonl", "{question}", limit=1024, val_fraction=0.02, max_length=192)
seen.setup("fit")  # the same seeded subset the SoftSRV fits train and sample on
used = set(seen.train_texts) | set(seen.val_texts)
questions = [json.loads(line)["question"] for line in open("data/gsm8k/train.jsonl", encoding="utf-8").read().split("\n") if line.strip()]
unseen = [i for i, q in enumerate(questions) if q not in used]
pick = sorted(random.Random(0).sample(unseen, int(sys.argv[2])))
with open(sys.argv[1] + ".tmp", "w", encoding="utf-8") as f:
    f.writelines(json.dumps({"id": i, "question": questions[i]}, ensure_ascii=False) + "\n" for i in pick)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
PY
  score "$R/real/train$N.jsonl" question
}

pt_cool() {  # PT at temperature 0.7, top-p 0.9: the template baseline with the decoding that suits a small model best
  local dir="$R/pt_cool"
  [ -f "$dir/samples.jsonl.summary.json" ] || synthtune predict --config configs/template_generation/gsm8k_cpu.yaml \
    --model.init_args.temperature 0.7 --model.init_args.top_p 0.9 --data.init_args.num_requests 140 \
    --trainer.default_root_dir "$dir"
  [ -f "$dir/first$N.jsonl" ] || first_n "$dir/samples.jsonl" "$dir/first$N.jsonl"
  score "$dir/first$N.jsonl" text
}

ss_mc_cool() {  # the SS_MC prompt sampled at the same cooler decoding as pt-cool
  local dir="$R/ss_mc_cool"
  [ -f "$R/ss_mc/fit.done" ] || softsrv mc
  [ -f "$dir/samples.jsonl.summary.json" ] || synthtune predict --config "$R/ss_mc/config.yaml" \
    --ckpt_path "$R/ss_mc/checkpoints/last.ckpt" --data.init_args.predict_batch_size 32 \
    --model.init_args.temperature 0.7 --model.init_args.top_p 0.9 --trainer.default_root_dir "$dir" \
    --writer.output_path "$dir/samples.jsonl"
  score "$dir/samples.jsonl" text
}

eos_only() {  # every finished row's samples that ended at EOS (not at the cap), scored again: <stem>.eos.jsonl
  local rows
  for rows in "$R"/ss_np/samples.jsonl "$R"/ss_mp/samples.jsonl "$R"/ss_mc/samples.jsonl "$R"/ss_mc_cool/samples.jsonl \
              "$R"/pt/first$N.jsonl "$R"/pt_sr/first$N.jsonl "$R"/pt_cool/first$N.jsonl; do
    [ -f "${rows%.jsonl}.mauve.json" ] || continue
    [ -f "${rows%.jsonl}.eos.jsonl" ] || python - "$rows" <<'PY'
import json, os, sys
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8").read().split("\n") if line.strip()]
out = sys.argv[1][: -len(".jsonl")] + ".eos.jsonl"
with open(out + ".tmp", "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if not r["hit_cap"])
os.replace(out + ".tmp", out)
PY
    score "${rows%.jsonl}.eos.jsonl" text
  done
}

jobs=("$@")
[ ${#jobs[@]} -gt 0 ] || jobs=(ss-np ss-mp ss-mc pt pt_sr real pt-cool ss-mc-cool eos report)
for job in "${jobs[@]}"; do
  echo "=== $job $(date -u +%FT%TZ)"
  case "$job" in
    ss-np|ss-mp|ss-mc) softsrv "${job#ss-}" ;;
    pt) pt ;;
    pt_sr) pt_sr ;;
    pt-cool) pt_cool ;;
    ss-mc-cool) ss_mc_cool ;;
    eos) eos_only ;;
    real) real ;;
    report) python docs/results/softsrv/report.py "$R" ;;
    *) echo "unknown job $job (jobs: ss-np ss-mp ss-mc pt pt_sr real pt-cool ss-mc-cool eos report)" >&2; exit 2 ;;
  esac
  echo "=== $job done $(date -u +%FT%TZ)"
done

"""PT_SR of docs/results/softsrv.md: the critique-and-rewrite rounds (Fig. 11) applied to the PT run's questions.

``synthtune predict --config configs/template_generation/gsm8k_cpu.yaml --model.init_args.mode pt_sr`` writes
the same rows, but first samples the PT drafts again; they are identical (every seed depends only on the run
seed, the request and the stage, and sampling does not depend on the batch), so this script refines the rows
the PT run already wrote and saves that half of the CPU time. It uses the module's own ``refine_rows`` with the
config's settings (mode pt_sr) and resumes: finished rows are kept in OUTPUT.partial and skipped on a rerun.

    python docs/results/softsrv/refine_pt.py runs/results-softsrv/pt/seed0/first500.jsonl \
        runs/results-softsrv/pt_sr/seed0/first500.jsonl [--model.init_args.seed 0 ...]

Options after the two files override the config as on the command line (the PT run's seed, temperature and
template_set, so the rows' params say what made them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from synthtune.contract import PromptData
from synthtune.lightning_modules.template_generation import TemplateGenerationModule
from synthtune.paths import atomic_write_json, atomic_write_jsonl
from synthtune.lightning_cli import compose

CONFIG = "configs/template_generation/gsm8k_cpu.yaml"
CHUNK = 32


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def main(drafts_file: str, output: str, *overrides: str) -> None:
    composed = compose(["predict", "--config", CONFIG, "--model.init_args.mode", "pt_sr", *overrides])
    init = {k: v for k, v in composed["model"]["init_args"].items()}
    module = TemplateGenerationModule(**init).eval()
    data = composed["data"]["init_args"]
    train = [json.loads(line)["question"] for line in Path(data["train_path"]).read_text(encoding="utf-8").split("\n")
             if line.strip()]
    module.connect(PromptData(source=data["train_path"], train_texts=tuple(train)))
    drafts = read(Path(drafts_file))
    out, partial = Path(output), Path(output + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {row["id"] for row in read(partial)} if partial.is_file() else set()
    params = module.generation_params()
    todo = [row for row in drafts if row["id"] not in done]
    print(f"PT_SR: {len(drafts)} PT questions, {len(done)} already refined, {len(todo)} to go", flush=True)
    torch.manual_seed(0)
    with torch.inference_mode(), partial.open("a", encoding="utf-8") as f:
        for start in range(0, len(todo), CHUNK):
            rows = [{**row, "method": "pt_sr", "params": params} for row in todo[start:start + CHUNK]]
            for row in module.refine_rows(rows):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            print(f"  {len(done) + start + len(rows)} / {len(drafts)}  {dict(module.counts)}", flush=True)
    rows = sorted(read(partial), key=lambda r: r["id"])
    atomic_write_jsonl(out, rows)
    capped = sum(bool(r.get("hit_cap")) for r in rows)
    summary = {"samples": len(rows), "ended_at_eos": len(rows) - capped, "hit_cap": capped,
               "stopped_by_a_stop_reply": sum(bool(r["stopped"]) for r in rows),
               "rewritten": sum(r["rounds"] > 0 for r in rows)}
    atomic_write_json(output + ".summary.json", summary)
    print(summary)


if __name__ == "__main__":
    main(*sys.argv[1:])

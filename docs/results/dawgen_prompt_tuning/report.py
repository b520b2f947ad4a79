"""Tables and figure of docs/results/dawgen_prompt_tuning.md from the runs of run.sh (usage: python report.py ROOT).

Reads the generators' on_label.json and samples summaries, and each task's sweep results
(<root>/sweep-<task>/results.jsonl), prints the markdown tables and writes accuracy.png next to this file.
Cells with fewer than three seeds say n, so the page can be written as the grid fills.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from synthtune.commands.sweep import markdown_table, plot_table, row_name

HERE = Path(__file__).resolve().parent
TASKS = ["sst2", "rte"]
ROWS = ["zero_shot", "in_context", "real", "syn", "real+syn", "paired/off", "paired/on", "paired/on@uniform",
        "syn@eos", "real+syn@eos", "paired/off@eos", "paired/on@eos", "ft_prompt"]  # @eos: SST-2's follow-up


def load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.is_file() else []


def norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def generators(root: Path) -> None:
    print("## Generators: on-label accuracy of 256 samples per label\n")
    print("| task | generator | samples | ended at EOS | copies of a train row | zero-shot judge | calibrated | "
          "supervised judge (its test acc) | zero-shot / calibrated on real dev |")
    print("|---|---|---|---|---|---|---|---|---|")
    for task in TASKS:
        train = {norm(r.get("text_b", r.get("text", ""))) for r in rows(Path("data") / task / "train.jsonl")}
        train |= {norm(r.get("text_b", r.get("text", ""))) for s in (13, 21, 42, 87, 100)
                  for r in rows(Path("data") / task / "kshot" / f"16-{s}" / "train.jsonl")}
        for variant, name in (("", "DawGen (learned weights, λ = 1)"), ("-uniform", "uniform weights, λ = 0"),
                              ("-eos", "DawGen, EOS weight pinned to 1")):
            d = root / f"dawgen-{task}{variant}"
            report, samples = load(d / "on_label.json"), rows(d / "samples.jsonl")
            if variant == "-eos" and not d.exists():  # the follow-up ran on SST-2 only
                continue
            if not report:
                print(f"| {task} | {name} | pending | | | | | | |")
                continue
            g, dev = report["generated"], report["real_dev_seed42"]
            field = "text_b" if task == "rte" else "text"
            eos = sum(not r.get("hit_cap") for r in samples)
            copies = sum(norm(r[field]) in train for r in samples)
            judge = g.get("supervised_judge")
            judged = f"{judge['accuracy']:.3f} ({judge['judge_test_accuracy']:.3f})" if judge else "–"
            print(f"| {task} | {name} | {len(samples)} | {eos} | {copies} | {g['accuracy']:.3f} | "
                  f"{g['calibrated']['accuracy']:.3f} | {judged} | {dev['accuracy']:.3f} / "
                  f"{dev['calibrated']['accuracy']:.3f} |")
    print()


def grid(root: Path) -> None:
    results = [r for task in TASKS for r in rows(root / f"sweep-{task}" / "results.jsonl")]
    if not results:
        print("(no sweep results yet)")
        return
    for metric, label in (("acc", "accuracy"), ("f1", "macro-F1")):
        print(f"## Test {label} (%), mean ± std over seeds 13, 21, 42\n")
        print(markdown_table(results, TASKS, ROWS, metric, expected=3))
    print("## Gradient conflict rate of the paired + GS runs (share of steps), and seconds per run\n")
    print("| row | " + " | ".join(f"{t} conflict rate | {t} s/run" for t in TASKS) + " |")
    print("|---|" + "---|---|" * len(TASKS))
    for row in ROWS:
        cells = []
        for task in TASKS:
            found = [r for r in results if r["task"] == task and r["row"] == row]
            # the module counts a conflict only where it projects, so a paired run without GS always logs 0
            rates = [r["conflict_rate"] for r in found if "/on" in row and "conflict_rate" in r]
            cells.append(f"{np.mean(rates):.2f} ({', '.join(f'{v:.2f}' for v in rates)})" if rates else "–")
            cells.append(f"{np.mean([r['seconds'] for r in found]):.0f}" if found else "–")
        print(f"| {row_name(row)} | " + " | ".join(cells) + " |")
    plot_table(results, TASKS, ROWS, "acc", HERE / "accuracy.png")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python docs/results/dawgen_prompt_tuning/report.py RUN_ROOT (e.g. runs/results-dawgen-pt)")
    generators(Path(sys.argv[1]))
    grid(Path(sys.argv[1]))

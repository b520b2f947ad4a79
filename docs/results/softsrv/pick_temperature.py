"""The PT baselines' temperature, chosen as in the SoftSRV paper's App. A.2 (a search over {1, 2, 4}).

The paper picked the temperature that gave "a balance of diversity and quality" (2). Here that criterion is MAUVE
of each temperature's PT questions against the GSM8K *train* split: MAUVE falls both when the questions leave the
real distribution (quality, its type I side) and when they cover too little of it (diversity, its type II side),
and the train split keeps the test questions out of the choice. The highest mean MAUVE wins; a tie goes to the
lower temperature. A temperature whose replies gave too few questions to score (no ``samples.mauve-train.json``)
is not a candidate. Usage (run.sh's pt-temperature job):

    python docs/results/softsrv/pick_temperature.py runs/results-softsrv/pt_temperature 1 2 4

reads ``<root>/t<T>/samples.jsonl`` and ``samples.mauve-train.json`` and writes ``<root>/choice.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from synthtune.curation.novelty import distinct_rows
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_json


def choose(candidates: dict[float, Optional[float]]) -> float:
    """The temperature with the highest MAUVE (ties: the lowest temperature); ``None`` scores are skipped.

    Args:
        candidates: temperature -> mean MAUVE against the train split, or ``None`` when it could not be scored.
    """
    scored = {t: m for t, m in candidates.items() if m is not None}
    if not scored:
        raise SynthtuneError("no temperature gave enough PT questions to score; raise --data.init_args.num_requests")
    return min(scored, key=lambda t: (-scored[t], t))


def summary(folder: Path) -> dict[str, Any]:
    """What one temperature's PT run gave: questions, distinct rows, '?' share, EOS-ended replies, MAUVE vs train."""
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text(encoding="utf-8").split("\n") if line.strip()]
    texts = [r["text"] for r in rows]
    report_file = folder / "samples.mauve-train.json"
    report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.is_file() else None
    return {"questions": len(texts), "distinct_rows": distinct_rows(texts) if texts else 0,
            "with_question_mark": sum("?" in t for t in texts) / len(texts) if texts else 0.0,
            "ended_at_eos": sum(not r["hit_cap"] for r in rows) / len(rows) if rows else 0.0,
            "mauve_train": report["mean"] if report else None, "mauve_train_std": report["std"] if report else None}


def main(root: str, *temperatures: str) -> None:
    base = Path(root)
    table = {float(t): summary(base / f"t{t}") for t in temperatures}
    chosen = choose({t: s["mauve_train"] for t, s in table.items()})
    result = {"temperature": chosen, "criterion": "highest MAUVE of the PT questions against the GSM8K train split "
              "(16 buckets, k-means seeds 0-2, MiniLM); ties to the lower temperature",
              "candidates": {str(t): s for t, s in table.items()}}
    atomic_write_json(base / "choice.json", result)
    for t, s in table.items():
        mauve = "-" if s["mauve_train"] is None else f"{s['mauve_train']:.3f} ± {s['mauve_train_std']:.3f}"
        print(f"T {t:g}: {s['questions']} questions ({s['distinct_rows']} distinct, {s['with_question_mark']:.0%} with "
              f"'?'), MAUVE vs train {mauve}{'  <- chosen' if t == chosen else ''}")


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    except SynthtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)

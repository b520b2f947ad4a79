"""Controls for the MMD resampling of docs/results/pipeline.md, matched on the number of distinct rows.

MMD resampling draws 500 rows with replacement by learned weights, so it keeps few distinct samples (176 of 500 on
the page's first run). A fair control repeats rows just as much without the weights. Both controls here hold
exactly as many distinct rows as the MMD draw and as many rows in all:

* ``uniform``: that many distinct samples drawn uniformly from all of the run's samples;
* ``eos``: that many drawn uniformly from only the samples that ended at EOS (the EOS filter, which on its own
  scored MAUVE 0.67 on the page's run);

each set is then filled to the MMD draw's size by drawing again, with replacement, among its chosen rows. Usage
(docs/results/pipeline/run.sh's controls job):

    python docs/results/pipeline/controls.py SAMPLES.jsonl MMD_RESAMPLED.jsonl OUT_DIR [SEED]

writes ``OUT_DIR/uniform.jsonl``, ``OUT_DIR/eos.jsonl`` and ``OUT_DIR/controls.json`` (the counts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_json, atomic_write_jsonl


def matched_draw(candidates: Sequence[int], distinct: int, size: int, seed: int) -> list[int]:
    """``size`` picks from ``candidates`` holding exactly ``distinct`` different ones: ``distinct`` drawn without
    replacement, each kept once, the rest drawn with replacement among them, in shuffled order.

    Args:
        candidates: the indices that may be picked.
        distinct: how many different indices the draw holds.
        size: how many picks in all (at least ``distinct``).
        seed: seed of the draw.
    """
    if not 1 <= distinct <= len(candidates):
        raise SynthtuneError(f"a control with {distinct} distinct rows needs at least that many candidates, "
                             f"got {len(candidates)}")
    if size < distinct:
        raise SynthtuneError(f"{size} rows cannot hold {distinct} distinct ones")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.asarray(candidates), size=distinct, replace=False)
    picks = np.concatenate([chosen, rng.choice(chosen, size=size - distinct, replace=True)])
    return rng.permutation(picks).tolist()


def source_key(row: dict[str, Any]) -> Any:
    """Which sample a row is: an MMD draw's ``synthetic_id`` (its own ``id`` is its position in the draw), else the
    row's ``id``, else its text."""
    return row.get("synthetic_id", row.get("id", row.get("text")))


def distinct_ids(rows: Sequence[dict[str, Any]]) -> int:
    """How many different samples a resampled file holds."""
    return len({source_key(r) for r in rows})


def read(path: str | Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        raise SynthtuneError(f"{path} not found; run the job that writes it first")
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").split("\n") if line.strip()]


def main(samples: str, resampled: str, out: str, seed: str = "0") -> dict[str, Any]:
    rows, mmd = read(samples), read(resampled)
    distinct, size = distinct_ids(mmd), len(mmd)
    eos = [i for i, r in enumerate(rows) if not r["hit_cap"]]
    folder = Path(out)
    report: dict[str, Any] = {"samples": len(rows), "ended_at_eos": len(eos), "mmd_rows": size,
                              "mmd_distinct": distinct, "seed": int(seed)}
    for name, candidates in (("uniform", list(range(len(rows)))), ("eos", eos)):
        picks = matched_draw(candidates, distinct, size, int(seed))
        atomic_write_jsonl(folder / f"{name}.jsonl", [rows[i] for i in picks])
        report[name] = {"rows": len(picks), "distinct": len(set(picks)), "candidates": len(candidates)}
    atomic_write_json(folder / "controls.json", report)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    except SynthtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)

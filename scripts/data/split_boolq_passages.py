"""Split the passage-bearing BoolQ rows (data/boolq/validation.jsonl) into a train and an evaluation set.

The SoftSRV paper generates BoolQ *passage + question* pairs, but the official train split is shipped
here without passages (data/boolq/train_no_passage.jsonl). This script makes the documented split of the
2,270 rows that do have passages: grouped by article title, so that no article (and hence no passage)
is in both sets, with a fixed seed. It is deterministic; rerunning it rewrites identical files.

    python scripts/data/split_boolq_passages.py            # writes passage_train.jsonl / passage_eval.jsonl
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data" / "boolq"
SEED = 20261201
EVAL_FRACTION = 0.2


def main() -> None:
    rows = [json.loads(line) for line in (DATA / "validation.jsonl").read_text(encoding="utf-8").splitlines()]
    by_title: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_title[row["title"]].append(row)
    titles = sorted(by_title)
    random.Random(SEED).shuffle(titles)
    target = round(EVAL_FRACTION * len(rows))
    eval_rows: list[dict] = []
    train_rows: list[dict] = []
    for title in titles:
        (eval_rows if len(eval_rows) < target else train_rows).extend(by_title[title])
    sums = {}
    for name, part in (("passage_train", train_rows), ("passage_eval", eval_rows)):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
        (DATA / f"{name}.jsonl").write_text(text, encoding="utf-8")
        sums[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        print(f"{name}: {len(part)} rows, {len({r['title'] for r in part})} articles, sha256_16 {sums[name]}")
    assert not {r["title"] for r in train_rows} & {r["title"] for r in eval_rows}


if __name__ == "__main__":
    main()

"""docs/results/pipeline/controls.py: controls with exactly as many distinct rows as the MMD draw."""

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from synthtune.errors import SynthtuneError

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("controls", REPO / "docs/results/pipeline/controls.py")
controls = importlib.util.module_from_spec(spec)
spec.loader.exec_module(controls)


@pytest.mark.parametrize("distinct,size", [(1, 5), (176, 500), (40, 40)])
def test_matched_draw_holds_exactly_the_distinct_count(distinct, size):
    candidates = list(range(0, 800, 2))
    picks = controls.matched_draw(candidates, distinct, size, seed=3)
    assert len(picks) == size and len(set(picks)) == distinct and set(picks) <= set(candidates)
    assert picks == controls.matched_draw(candidates, distinct, size, seed=3)
    if distinct > 1:  # another seed picks other rows
        assert set(picks) != set(controls.matched_draw(candidates, distinct, size, seed=4))
    with pytest.raises(SynthtuneError, match="needs at least that many candidates"):
        controls.matched_draw(candidates[:3], 4, 10, 0)
    with pytest.raises(SynthtuneError, match="cannot hold"):
        controls.matched_draw(candidates, 10, 9, 0)


def test_main_writes_uniform_and_eos_controls(tmp_path):
    rows = [{"id": i, "text": f"q{i}", "hit_cap": i % 3 == 0} for i in range(30)]
    # an MMD draw: 7 distinct samples of 30 rows, each row renumbered with the sample it copies as synthetic_id
    mmd = [{**rows[i % 7], "id": i, "synthetic_id": i % 7} for i in range(30)]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mmd))
    report = controls.main(str(tmp_path / "s.jsonl"), str(tmp_path / "m.jsonl"), str(tmp_path / "out"))
    assert report["mmd_distinct"] == 7 and report["ended_at_eos"] == 20
    for name in ("uniform", "eos"):
        written = [json.loads(line) for line in (tmp_path / "out" / f"{name}.jsonl").read_text().splitlines()]
        assert len(written) == 30 and len(Counter(r["id"] for r in written)) == 7
    eos = [json.loads(line) for line in (tmp_path / "out" / "eos.jsonl").read_text().splitlines()]
    assert not any(r["hit_cap"] for r in eos)

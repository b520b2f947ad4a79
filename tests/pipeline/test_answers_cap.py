"""Answers cut off at the length cap are not exported (issue 28, item 3)."""

import json
from pathlib import Path

import pytest
import yaml

from synthtune.commands.score import mauve
from synthtune.curation.mauve_score import auto_clusters
from synthtune.errors import SynthtuneError
from synthtune.pipeline.stages import split_capped

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


ANSWERS = [{"id": i, "question": f"q{i}", "answer": f"a{i}", "hit_cap": i in (1, 4)} for i in range(6)]


def test_answers_that_hit_the_cap_are_dropped_and_kept_aside(tmp_path):
    source = write(tmp_path / "all.jsonl", ANSWERS)
    report = split_capped(source, tmp_path / "rows.jsonl", tmp_path / "capped.jsonl")
    assert report == {"answers": 6, "hit_cap": 2, "dropped_at_cap": 2, "kept": 4}
    assert [r["id"] for r in read(tmp_path / "rows.jsonl")] == [0, 2, 3, 5]
    assert [r["id"] for r in read(tmp_path / "capped.jsonl")] == [1, 4]


def test_keep_capped_keeps_them_flagged(tmp_path):
    source = write(tmp_path / "all.jsonl", ANSWERS)
    report = split_capped(source, tmp_path / "rows.jsonl", tmp_path / "capped.jsonl", keep_capped=True)
    assert report == {"answers": 6, "hit_cap": 2, "dropped_at_cap": 0, "kept": 6}
    assert [r["hit_cap"] for r in read(tmp_path / "rows.jsonl")] == [r["hit_cap"] for r in ANSWERS]


def test_the_demo_caps_answers_from_gsm8k_answer_lengths_and_drops_cut_ones():
    answers = yaml.safe_load((REPO / "configs/template_generation/answers_gsm8k.yaml").read_text())
    init = answers["model"]["init_args"]
    assert init.get("sampling", init)["max_new_tokens"] == 320  # p99 292 of GSM8K train answers, plus 10 %
    demo = yaml.safe_load((REPO / "pipelines/gsm8k_softsrv.yaml").read_text())
    assert demo["answers"]["keep_capped"] is False
    assert "model.init_args.max_new_tokens" not in demo["answers"]["overrides"]  # the config's cap, not 192
    assert demo["score"]["clusters"] == "auto" and demo["score"]["ceiling"] == "data/gsm8k/train.jsonl"
    assert demo["score"]["raw_field"] == "text"


def test_auto_buckets_follow_the_smaller_set():
    assert [auto_clusters(48, 200), auto_clusters(200, 24), auto_clusters(12, 10), auto_clusters(500, 500)] == \
        [5, 2, 2, 50]


def test_a_ceiling_smaller_than_the_synthetic_set_is_one_line(tmp_path):
    synthetic = write(tmp_path / "syn.jsonl", [{"text": f"question {i}?"} for i in range(8)])
    reference = write(tmp_path / "ref.jsonl", [{"text": f"real {i}?"} for i in range(8)])
    ceiling = write(tmp_path / "train.jsonl", [{"text": f"train {i}?"} for i in range(5)])
    with pytest.raises(SynthtuneError, match="--ceiling .* has 5 rows, fewer than the 8 synthetic rows"):
        mauve(str(synthetic), str(reference), ceiling=str(ceiling), clusters="auto", no_plot=True)
    with pytest.raises(SynthtuneError, match="--clusters takes a number or auto, got 'many'"):
        mauve(str(synthetic), str(reference), clusters="many", no_plot=True)
    with pytest.raises(SynthtuneError, match="--ceiling_draws must be at least 1"):
        mauve(str(synthetic), str(reference), ceiling=str(ceiling), ceiling_draws=0, no_plot=True)


def test_the_answers_stage_exports_no_answer_cut_at_the_cap(tiny_llama, tmp_path, monkeypatch, caplog, capsys):
    """fit -> predict -> answers -> export on the tiny model: its answers never reach EOS in 4 tokens, so every one
    is dropped, counted in the manifest and kept aside, and the export refuses an empty set in one line."""
    from pipeline.test_pipeline import QUESTIONS, sections
    from synthtune.commands.pipeline import pipeline

    files = tmp_path / "files"
    files.mkdir()
    write(files / "train.jsonl", [{"question": q} for q in QUESTIONS])
    write(files / "test.jsonl", [{"question": q} for q in QUESTIONS[:4]])
    found = sections(files, tiny_llama)
    fit = {**found["fit"], "overrides": {"trainer.enable_progress_bar": True}}  # the tiny config turns it off
    config = {"fit": fit, "predict": found["predict"],
              "answers": {"config": str(REPO / "configs/template_generation/answers_gsm8k.yaml"), "field": "text",
                          "overrides": {"model.init_args.backbone": tiny_llama, "model.init_args.max_new_tokens": 4}},
              "export": {"name": "tiny"}}
    monkeypatch.chdir(tmp_path)
    caplog.set_level("INFO", logger="synthtune")
    with pytest.raises(SynthtuneError, match="no rows left to export"):
        pipeline(root="pipe", **config)
    # progress of the long stages in a log: each stage's end, and the Lightning stages' plain lines (stdout is no TTY)
    assert "pipeline: answers finished in " in caplog.text and " s (0 rows)" in caplog.text
    assert "answers: 12 of 12 answers stopped at the cap max_new_tokens=4 without EOS; dropped" in caplog.text
    out = capsys.readouterr().out
    assert "fit: step 4/4 (100 %), loss " in out and "predict: 12/12 samples (100 %)" in out
    manifest = json.loads((tmp_path / "pipe" / "answers" / "manifest.json").read_text())
    assert manifest["report"] == {"answers": 12, "hit_cap": 12, "dropped_at_cap": 12, "kept": 0, "max_new_tokens": 4}
    assert manifest["rows"] == 0 and read(tmp_path / "pipe" / "answers" / "rows.jsonl") == []
    assert len(read(tmp_path / "pipe" / "answers" / "capped.jsonl")) == 12
    assert all(r["hit_cap"] for r in read(tmp_path / "pipe" / "answers" / "all_answers.jsonl"))

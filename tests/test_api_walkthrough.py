"""docs/api.md's walk-through (fit -> generate -> curate -> score -> export), executed as written on a tiny model:
only the config, the reference file, the sizes and the featuriser are swapped, each by an exact replacement that
fails when the document changes."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml
from datasets import load_from_disk
from huggingface_hub import DatasetCard

from helpers import REPO, one_thread  # noqa: F401 - autouse fixture

QUESTIONS = [f"Tom has {i} apples and buys {i + 2} more apples at the shop. How many apples now?" for i in range(24)]


def walkthrough() -> str:
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split("## Walk-through", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_walkthrough(tiny_llama: str, tmp_path: Path, monkeypatch) -> dict:
    """docs/api.md's walk-through on the tiny model in ``tmp_path``; its variables."""
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    tests = [QUESTIONS[0]] + [f"Ann reads {i} pages a day for {i + 3} days. How many pages?" for i in range(11)]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in tests))
    config = {"seed_everything": 0,
              "model": {"class_path": "synthtune.lightning_modules.SoftSRVModule",
                        "init_args": {"backbone": tiny_llama, "parameterization": "mc", "prompt_length": 4,
                                      "mlp_hidden": 8, "lr": 0.01, "max_new_tokens": 12}},
              "data": {"class_path": "synthtune.datamodules.TextDataModule",
                       "init_args": {"path": str(tmp_path / "train.jsonl"), "text_template": "{question}",
                                     "batch_size": 4, "num_samples": 8}},
              "trainer": {"accelerator": "cpu", "devices": 1, "enable_model_summary": False}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    code = walkthrough()
    swaps = {'"configs/softsrv/demo.yaml"': repr(str(tmp_path / "tiny.yaml")),
             '"data/gsm8k/test.jsonl"': repr(str(tmp_path / "test.jsonl")),
             '"trainer.max_steps": 20': '"trainer.max_steps": 2', '"trainer.max_steps": 30': '"trainer.max_steps": 3',
             "st.generate(run, 32,": "st.generate(run, 12,", "num_samples=16, clusters=4": "num_samples=6, clusters=2",
             "no_plot=True": f"no_plot=True, featurizer={tiny_llama!r}, seeds=1, kmeans_num_redo=1"}
    for old, new in swaps.items():
        assert old in code, f"docs/api.md's walk-through no longer has {old}; update this test with it"
        code = code.replace(old, new)
    assert len(code.strip().splitlines()) <= 16  # "in 15 lines" (one is a continuation)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/api.md", "exec"), scope)  # noqa: S102 - the document's own code
    return scope


def check_walkthrough(scope: dict, tmp_path: Path, capsys) -> None:
    run, samples, resumed = scope["run"], scope["samples"], scope["resumed"]
    assert run.checkpoint.is_file() and len(samples) == 12
    assert scope["curated"]["selected"] == 6 and len(scope["curated"].rows) == 6
    assert scope["clean"]["output"] == len(scope["clean"].rows) <= 6
    assert 0.0 <= scope["mauve"]["mean"] <= 1.0
    exported = load_from_disk(str(tmp_path / "runs/nb/export/dataset"))
    assert len(exported) == scope["clean"]["output"] and exported["text"] == scope["dataset"]["text"]
    card = DatasetCard.load(tmp_path / "runs/nb/export/README.md")
    assert card.data.to_dict()["task_categories"] == ["text-generation"]
    assert "SoftSRVModule" in card.text and "decontamination:" in card.text
    assert "resumed at step 2" in capsys.readouterr().out and resumed.checkpoint == run.checkpoint


@pytest.mark.skipif(importlib.util.find_spec("mauve") is None, reason="optional mauve-text not installed")
def test_the_walkthrough_runs_as_documented(tiny_llama, tmp_path, monkeypatch, capsys):
    check_walkthrough(run_walkthrough(tiny_llama, tmp_path, monkeypatch), tmp_path, capsys)


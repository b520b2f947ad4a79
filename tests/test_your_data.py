"""docs/your_data.md's worked example, run command by command as written on a tiny model: only the configs, the
sizes and the path of the committed CSV are swapped, each by an exact replacement that fails when the document
changes."""

from __future__ import annotations

import json
import re
import shlex

import pandas as pd
import yaml

from helpers import REPO, one_thread  # noqa: F401 - autouse fixture
from synthtune.cli import main

CSV = REPO / "docs" / "your_data" / "reviews.csv"


def blocks() -> list[tuple[str, str]]:
    """(language, code) of every bash and python block of the worked example, in order."""
    text = (REPO / "docs" / "your_data.md").read_text(encoding="utf-8")
    section = text.split("## Worked example", 1)[1]
    return re.findall(r"```(bash|python)\n(.*?)```", section, re.S)


def commands(code: str) -> list[list[str]]:
    """The command lines of a bash block (backslash continuations joined), each as its words."""
    return [shlex.split(line) for line in code.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_csv_holds_sixty_reviews_with_the_four_columns():
    rows = pd.read_csv(CSV)
    assert list(rows.columns) == ["review", "label", "stars", "product"] and len(rows) == 60
    assert set(rows["label"]) == {"positive", "negative"} and rows["stars"].between(1, 5).all()


def test_the_worked_example_runs_as_documented(tiny_llama, tmp_path, monkeypatch):
    trainer = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
               "log_every_n_steps": 1, "logger": False}
    softsrv = {"seed_everything": 0, "trainer": trainer,
               "model": {"class_path": "synthtune.lightning_modules.SoftSRVModule",
                         "init_args": {"backbone": tiny_llama, "parameterization": "mc", "prompt_length": 4,
                                       "mlp_hidden": 8, "lr": 0.01, "sampling": {"max_new_tokens": 12}}},
               "data": {"class_path": "synthtune.datamodules.TextDataModule",
                        "init_args": {"path": "set-by-the-command", "batch_size": 8, "num_samples": 4}}}
    dawgen = {"seed_everything": 0, "trainer": trainer,
              "model": {"class_path": "synthtune.lightning_modules.DawGenModule",
                        "init_args": {"backbone": tiny_llama, "num_labels": 2, "prompt_length": 3,
                                      "weight_mlp_size": 8, "lr": 0.05, "weight_lr": 0.05,
                                      "sampling": {"max_new_tokens": 6}}},
              "data": {"class_path": "synthtune.datamodules.LabeledDataModule",
                       "init_args": {"task": "set-by-the-command", "k": 4, "seed": 1, "max_length": 24,
                                     "batch_size": 4}}}
    (tmp_path / "softsrv.yaml").write_text(yaml.safe_dump(softsrv))
    (tmp_path / "dawgen.yaml").write_text(yaml.safe_dump(dawgen))
    swaps = {"configs/softsrv/demo.yaml": str(tmp_path / "softsrv.yaml"),
             "configs/dawgen/demo.yaml": str(tmp_path / "dawgen.yaml"),
             "docs/your_data/reviews.csv": str(CSV),
             "--trainer.max_steps 60": "--trainer.max_steps 2", "--trainer.max_steps 24": "--trainer.max_steps 2",
             "--data.init_args.num_samples 64": "--data.init_args.num_samples 12",
             "--num_samples 32 --clusters 4": "--num_samples 4 --clusters 2",
             "--data.init_args.num_per_label 8": "--data.init_args.num_per_label 3"}
    found = blocks()
    text = "".join(code for _, code in found)
    for old in swaps:
        assert old in text, f"docs/your_data.md's worked example no longer has {old}; update this test with it"
    monkeypatch.chdir(tmp_path)
    ran = []
    for language, code in found:
        for old, new in swaps.items():
            code = code.replace(old, new)
        if language == "python":
            exec(compile(code, "docs/your_data.md", "exec"), {})  # noqa: S102 - the document's own code
            continue
        for words in commands(code):
            assert words[0] == "synthtune", words
            try:
                main(words[1:])
            except SystemExit as exc:
                assert not exc.code, f"`{shlex.join(words)}` exited {exc.code}"
            ran.append(words[1])
    assert ran == ["fit", "predict", "decontaminate", "curate", "fit", "predict"]

    def rows(path):
        return [json.loads(line) for line in (tmp_path / path).read_text().splitlines()]

    config = yaml.safe_load((tmp_path / "runs/my-reviews/config.yaml").read_text())
    assert config["data"]["init_args"]["text_template"] == "Review of a {product} ({stars} stars): {review}"
    assert len(rows("runs/my-reviews/samples.jsonl")) == 12
    assert len(rows("runs/my-reviews/curated.jsonl")) == 4
    report = json.loads((tmp_path / "runs/my-reviews/clean.jsonl.report.json").read_text())
    assert report["num_references"] == 60 and report["broken_lines_skipped"] == 0
    labelled = rows("runs/my-reviews-dawgen/samples.jsonl")
    assert sorted(r["label_name"] for r in labelled) == ["negative"] * 3 + ["positive"] * 3
    dawgen_config = yaml.safe_load((tmp_path / "runs/my-reviews-dawgen/config.yaml").read_text())
    assert dawgen_config["data"]["init_args"]["train_path"] == str(CSV)  # the CSV as it is, no renamed copy
    source = pd.read_csv(CSV)
    for sample in rows("runs/my-reviews/samples.jsonl"):  # the join the last section documents
        assert 0 <= sample["context_row"] < len(source)


def test_the_fit_commands_parse_with_the_shipped_configs(monkeypatch):
    """The swapped configs above are tiny; the fits as written compose with the real ones (nothing runs)."""
    from synthtune.lightning_cli import compose

    monkeypatch.chdir(REPO)
    fits = [words for language, code in blocks() if language == "bash" for words in commands(code)
            if words[1] == "fit"]
    assert len(fits) == 2
    for words in fits:
        composed = compose(words[1:])
        assert composed["trainer"]["default_root_dir"].startswith("runs/my-reviews")
    assert composed["data"]["init_args"]["text_field"] == "review" and composed["data"]["init_args"]["label_names"] is None

"""``synthtune filter`` end to end through the command line: a tiny DawGen run and a tiny task folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_runner import run_synthtune, run_synthtune_output
from synthtune.cli import main
from synthtune.components.encoders import register_featurizer
from synthtune.curation.label_filter import Judge, generator_scores, load_dawgen_run
from synthtune.errors import SynthtuneError

POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun", "warm", "bright"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring", "cold", "grim", "weak"]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    """A two-label task folder: meta.json, a 64-row train split (the judge's) and a validation split."""
    folder = tmp_path_factory.mktemp("words-task")
    (folder / "meta.json").write_text(json.dumps({"label_names": ["negative", "positive"], "fields": ["text", "label"]}))
    train = [{"text": f"a {a} and {b} movie", "label": lab}
             for lab, words in ((0, NEGATIVE), (1, POSITIVE)) for a in words for b in words[:4]]
    _jsonl(folder / "train.jsonl", train)
    _jsonl(folder / "validation.jsonl", [{"text": f"so {w} overall", "label": lab}
                                          for lab, words in ((0, NEGATIVE), (1, POSITIVE)) for w in words[4:]])
    return folder


@pytest.fixture(scope="module")
def synthetic(task) -> tuple[Path, list[bool]]:
    """17 generated rows: 10 labelled negative (7 read negative, 3 positive), 7 positive (5 positive, 2 negative)."""
    rows, on_label = [], []
    for i in range(10):
        agrees = i not in (2, 5, 8)
        words = NEGATIVE if agrees else POSITIVE
        rows.append({"id": i, "text": f"{words[i % 8]} and {words[(i + 3) % 8]} film", "label": 0,
                     "label_name": "negative", "method": "dawgen"})
        on_label.append(agrees)
    for i in range(7):
        agrees = i not in (1, 4)
        words = POSITIVE if agrees else NEGATIVE
        rows.append({"id": 10 + i, "text": f"{words[i % 8]} and {words[(i + 5) % 8]} film", "label": "positive",
                     "label_name": "positive", "method": "dawgen"})
        on_label.append(agrees)
    return _jsonl(task / "synthetic.jsonl", rows), on_label


@pytest.fixture(scope="module")
def run(task, tiny_llama, tmp_path_factory) -> Path:
    """A DawGen run folder made by `synthtune fit` (2 steps on the tiny model)."""
    root = tmp_path_factory.mktemp("dawgen-run")
    config = {
        "seed_everything": 0,
        "model": {"class_path": "synthtune.lightning_modules.DawGenModule",
                  "init_args": {"backbone": tiny_llama, "num_labels": 2, "prompt_length": 3, "weight_mlp_size": 8,
                                "lr": 0.05, "weight_lr": 0.05, "max_new_tokens": 4}},
        "data": {"class_path": "synthtune.datamodules.LabeledDataModule",
                 "init_args": {"task": str(task), "k": 4, "seed": 1, "max_length": 10, "batch_size": 4}},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 2, "enable_progress_bar": False,
                    "enable_model_summary": False, "logger": False, "default_root_dir": str(root / "run")},
    }
    (root / "fit.yaml").write_text(yaml.safe_dump(config))
    try:
        main(["fit", "--config", str(root / "fit.yaml")])
    except SystemExit as exc:
        assert not exc.code, exc
    assert (root / "run" / "checkpoints" / "last.ckpt").is_file()
    return root / "run"


def test_generator_filter_keeps_half_of_each_label_by_the_runs_own_score(run, synthetic, tmp_path, capsys):
    path, on_label = synthetic
    out = tmp_path / "kept.jsonl"
    code, err = run_synthtune(["filter", "--input", str(path), "--output", str(out), "--run", str(run)], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "kept.jsonl.report.json").read_text())
    assert report["labels"]["negative"]["rows"] == 10 and report["labels"]["negative"]["kept"] == 5
    assert report["labels"]["positive"]["rows"] == 7 and report["labels"]["positive"]["kept"] == 4  # 3.5 rounds up
    assert report["output"] == 9 and report["scorer"] == "generator" and report["keep_rule"]["keep_fraction"] == 0.5
    kept = _read(out)
    assert len(kept) == 9 and {"id", "text", "label", "label_name", "method", "filter_score"} <= set(kept[0])

    # the scores are the run's own label posteriors, and the kept rows are each label's best
    module, dm = load_dawgen_run(run)
    rows = _read(path)
    labels = [0] * 10 + [1] * 7
    scores = generator_scores(module, dm, rows, labels)
    kept_ids = [r["id"] for r in kept]
    np.testing.assert_allclose([r["filter_score"] for r in kept], scores[kept_ids], atol=1e-6)
    for label, block in ((0, range(10)), (1, range(10, 17))):
        inside = [scores[i] for i in block if i in kept_ids]
        outside = [scores[i] for i in block if i not in kept_ids]
        assert len(inside) and len(outside) and min(inside) >= max(outside), label
    assert report["labels"]["negative"]["mean_score"] == pytest.approx(float(np.mean(scores[:10])))

    # the judge: trained on the task's train split, used only to report
    judge = report["judge"]
    assert judge["train_rows"] == 64 and judge["test_accuracy"] == 1.0
    assert judge["on_label_before"] == pytest.approx(12 / 17)
    assert judge["on_label_after"] == pytest.approx(np.mean([on_label[i] for i in kept_ids]))


class WordCounts:
    """A fake sentence embedder: how many positive and how many negative words a text has."""

    name = "word-counts-filter-test"

    def encode(self, texts):
        return np.array([[sum(w in POSITIVE for w in t.split()), sum(w in NEGATIVE for w in t.split())]
                         for t in texts], dtype=np.float32)


def test_classifier_filter_from_a_printed_config_drops_the_off_label_rows(task, synthetic, tmp_path, capsys):
    register_featurizer(WordCounts.name, WordCounts)
    path, on_label = synthetic
    out, report = tmp_path / "kept.jsonl", tmp_path / "report.json"
    code, printed, err = run_synthtune_output(
        ["filter", "--input", str(path), "--output", str(out), "--scorer", "classifier", "--task", str(task),
         "--real", str(task / "train.jsonl"), "--featurizer", WordCounts.name, "--keep_fraction", "0.7",
         "--report", str(report), "--print_config"], capsys)
    assert code == 0, err
    config = yaml.safe_load(printed)
    assert config["scorer"] == "classifier" and config["keep_fraction"] == 0.7 and config["threshold"] is None
    (tmp_path / "filter.yaml").write_text(printed)
    assert not out.exists()  # --print_config only prints

    code, err = run_synthtune(["filter", "--config", str(tmp_path / "filter.yaml")], capsys)
    assert code == 0, err
    result = json.loads(report.read_text())
    # 0.7 of 10 -> 7, 0.7 of 7 -> floor(4.9 + 0.5) = 5: exactly the rows whose words agree with their label
    assert [result["labels"][n]["kept"] for n in ("negative", "positive")] == [7, 5]
    assert [r["id"] for r in _read(out)] == [i for i, agrees in enumerate(on_label) if agrees]
    assert result["judge"]["on_label_before"] == pytest.approx(12 / 17) and result["judge"]["on_label_after"] == 1.0


def test_threshold_mode_keeps_rows_at_or_above_it(task, synthetic, tmp_path, capsys):
    register_featurizer(WordCounts.name, WordCounts)
    path, on_label = synthetic
    out = tmp_path / "kept.jsonl"
    code, err = run_synthtune(["filter", "--input", str(path), "--output", str(out), "--scorer", "classifier",
                               "--task", str(task), "--real", str(task / "train.jsonl"), "--featurizer",
                               WordCounts.name, "--keep_fraction", "null", "--threshold", "-0.6931",
                               "--judge", "false"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "kept.jsonl.report.json").read_text())
    assert report["keep_rule"] == {"threshold": -0.6931} and report["judge"] is None
    kept = _read(out)
    assert len(kept) == sum(on_label) and min(r["filter_score"] for r in kept) >= -0.6931  # p(y|x) >= 1/2


@pytest.mark.parametrize("extra, words", [
    (["--input", "missing.jsonl"], "not found"),
    (["--threshold", "-1"], "both of keep_fraction and threshold"),
    (["--keep_fraction", "1.5"], "(0, 1]"),
    (["--scorer", "generator"], "--run"),
    (["--real", "null"], "--real"),
])
def test_user_mistakes_exit_2_with_one_line(task, synthetic, tmp_path, capsys, extra, words):
    path, _ = synthetic
    argv = ["filter", "--input", str(path), "--output", str(tmp_path / "o.jsonl"), "--task", str(task),
            "--scorer", "classifier", "--real", str(task / "train.jsonl"), "--judge", "false", *extra]
    code, err = run_synthtune(argv, capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert words in err and not (tmp_path / "o.jsonl").exists()


def test_an_unknown_label_and_a_run_without_checkpoint_are_one_line(run, task, tmp_path, capsys):
    bad = _jsonl(tmp_path / "bad.jsonl", [{"text": "good film", "label": 0}, {"text": "meh", "label": "maybe"}])
    code, err = run_synthtune(["filter", "--input", str(bad), "--output", str(tmp_path / "o.jsonl"), "--run", str(run)],
                              capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "row 1 has label 'maybe'" in err, err
    empty = tmp_path / "unfinished"
    empty.mkdir()
    (empty / "config.yaml").write_text((run / "config.yaml").read_text())
    good = _jsonl(tmp_path / "good.jsonl", [{"text": "good film", "label": 0}])
    code, err = run_synthtune(["filter", "--input", str(good), "--output", str(tmp_path / "o.jsonl"), "--run",
                               str(empty)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no checkpoints/last.ckpt" in err, err
    with pytest.raises(SynthtuneError, match="not a run folder"):
        load_dawgen_run(tmp_path)


def test_pipeline_filter_stage_scores_the_predicted_rows_with_the_fit(task, tiny_llama, tmp_path):
    from synthtune.commands.pipeline import pipeline

    config = {
        "seed_everything": 0,
        "model": {"class_path": "synthtune.lightning_modules.DawGenModule",
                  "init_args": {"backbone": tiny_llama, "num_labels": 2, "prompt_length": 3, "weight_mlp_size": 8,
                                "max_new_tokens": 6}},
        "data": {"class_path": "synthtune.datamodules.LabeledDataModule",
                 "init_args": {"task": str(task), "k": 4, "max_length": 10, "batch_size": 4, "num_per_label": 5}},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 1, "enable_progress_bar": False,
                    "enable_model_summary": False, "logger": False},
    }
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    done = pipeline(root=str(tmp_path / "pipe"), fit={"config": str(tmp_path / "fit.yaml")}, predict={},
                    filter={"keep_fraction": 0.6})
    kept = _read(tmp_path / "pipe" / "filter" / "rows.jsonl")
    assert [sum(r["label"] == lab for r in kept) for lab in (0, 1)] == [3, 3]  # 0.6 of 5 each
    report = json.loads((tmp_path / "pipe" / "filter" / "rows.jsonl.report.json").read_text())
    assert report["run"] == str(tmp_path / "pipe" / "fit") and report["scorer"] == "generator"
    assert report["judge"]["on_label_before"] is not None and done["filter"]["ran"]
    again = pipeline(root=str(tmp_path / "pipe"), fit={"config": str(tmp_path / "fit.yaml")}, predict={},
                     filter={"keep_fraction": 0.6})
    assert not again["filter"]["ran"]  # up to date: nothing it reads changed


def test_the_shipped_dawgen_pipeline_filters_with_options_the_command_has():
    import inspect

    from synthtune.commands import build_parser
    from synthtune.commands.filter import filter_rows

    repo = Path(__file__).resolve().parents[2]
    config = build_parser("pipeline").parse_args(["--config", str(repo / "pipelines/sst2_dawgen.yaml")]).as_dict()
    assert config["filter"] == {"scorer": "generator", "keep_fraction": 0.5}
    assert set(config["filter"]) <= set(inspect.signature(filter_rows).parameters)

"""One reader for every command that reads rows (issue 32, item 1): JSONL, CSV, TSV, Parquet, save_to_disk folders
and datasets names reach fit/predict data, curate, decontaminate, score, filter and the pipeline's references
alike; template fields write numbers and booleans as text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from datasets import Dataset, DatasetDict

import synthtune.api as st
from cli_runner import run_synthtune
from commands.test_filter import NEGATIVE, POSITIVE, WordCounts, task  # noqa: F401 - the task fixture
from helpers import one_thread  # noqa: F401 - autouse fixture
from synthtune.components.encoders import register_featurizer
from synthtune.datamodules.text import TextDataModule
from synthtune.errors import SynthtuneError
from synthtune.records import read_records

PRODUCTS = ["kettle", "toaster", "blender", "lamp", "fan", "heater", "mixer", "clock", "radio", "scale", "grill", "iron"]
WORDS = ["sturdy", "flimsy", "quiet", "noisy", "bright", "dim", "fast", "slow", "cheap", "pricey", "handy", "bulky"]
#: Twelve reviews that share no 4-gram: the product and two words of its own, and its star count.
REVIEWS = [{"review": f"the {p} felt {WORDS[i]} and {WORDS[i - 1]} review {i}", "label": int(i % 2 == 0),
            "stars": 1 + i % 5, "product": p} for i, p in enumerate(PRODUCTS)]
FORMATS = ["jsonl", "csv", "tsv", "parquet", "save_to_disk", "save_to_disk_dict", "dataset_name"]


def write(rows: list[dict], fmt: str, folder: Path, name: str, monkeypatch) -> str:
    """``rows`` in format ``fmt`` under ``folder``; returns what a command is given (a path or a name)."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(folder / f"{name}.jsonl")
    if fmt in ("csv", "tsv"):
        pd.DataFrame(rows).to_csv(folder / f"{name}.{fmt}", sep="," if fmt == "csv" else "\t", index=False)
        return str(folder / f"{name}.{fmt}")
    if fmt == "parquet":
        Dataset.from_list(rows).to_parquet(str(folder / f"{name}.parquet"))
        return str(folder / f"{name}.parquet")
    if fmt == "save_to_disk":
        Dataset.from_list(rows).save_to_disk(str(folder / name))
        return str(folder / name)
    if fmt == "save_to_disk_dict":
        DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(folder / name))
        return str(folder / name)
    # a datasets name: load_dataset reads it (from the local cache offline); here nothing may download, so the
    # name resolves to these rows and the test checks that every command sends names to it with its split
    import datasets

    loaded = getattr(monkeypatch, "_synthtune_names", {})
    loaded[f"someone/{name}"] = rows
    monkeypatch._synthtune_names = loaded

    def load_dataset(path, name=None, split=None, **kwargs):
        assert split == "train" and path in loaded, (path, split)
        return Dataset.from_list(loaded[path])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return f"someone/{name}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_fit_and_predict_data_read_every_format_and_write_numbers_in_templates(fmt, tmp_path, monkeypatch):
    path = write(REVIEWS, fmt, tmp_path, "reviews", monkeypatch)
    data = TextDataModule(path, text_template="{review} ({stars} stars, {product})")
    assert data.load_texts() == [f"{r['review']} ({r['stars']} stars, {r['product']})" for r in REVIEWS]


@pytest.mark.parametrize("fmt", FORMATS)
def test_curate_and_decontaminate_read_every_format(fmt, tmp_path, monkeypatch):
    path = write(REVIEWS, fmt, tmp_path, "reviews", monkeypatch)
    reference = write([{"question": REVIEWS[3]["review"]}, {"question": REVIEWS[7]["review"]}], fmt, tmp_path,
                      "reference", monkeypatch)
    curated = st.curate(path, str(tmp_path / "curated.jsonl"), num_samples=6, clusters=2, svd_components=2,
                        field="review")
    assert curated["output"] == 6 and len(curated.rows) == 6 and set(curated.rows["review"]) <= {r["review"] for r in REVIEWS}
    clean = st.decontaminate(path, reference, str(tmp_path / "clean.jsonl"), field="review",
                             reference_field="question", ngram=4)
    assert clean["decontaminated_dropped"] == 2
    kept = [json.loads(line) for line in (tmp_path / "clean.jsonl").read_text().splitlines()]
    assert [r["review"] for r in kept] == [r["review"] for i, r in enumerate(REVIEWS) if i not in (3, 7)]
    assert str(kept[0]["stars"]) == "1"  # CSV cells are text, the other formats keep the number


class StarCounts:
    """A fake sentence embedder: a text's length and its count of the letter e (no download)."""

    name = "star-counts-readers-test"

    def encode(self, texts):
        return np.array([[len(t), t.count("e")] for t in texts], dtype=np.float32)


@pytest.mark.parametrize("fmt", FORMATS)
def test_score_reads_every_format(fmt, tmp_path, monkeypatch):
    pytest.importorskip("mauve")
    register_featurizer(StarCounts.name, StarCounts)
    synthetic = write(REVIEWS, fmt, tmp_path, "synthetic", monkeypatch)
    reference = write([{"question": r["review"]} for r in REVIEWS[::-1]], fmt, tmp_path, "reference", monkeypatch)
    scored = st.score(synthetic, reference, field="review", reference_field="question", featurizer=StarCounts.name,
                      clusters=2, seeds=1, kmeans_num_redo=1, output=str(tmp_path / "mauve.json"), no_plot=True,
                      no_cache=True)
    assert scored["num_synthetic"] == scored["num_reference"] == 12 and scored["mean"] > 0.9


@pytest.mark.parametrize("fmt", FORMATS)
def test_filter_reads_every_format(fmt, task, tmp_path, monkeypatch):  # noqa: F811
    register_featurizer(WordCounts.name, WordCounts)
    rows = [{"text": f"{POSITIVE[i]} and {POSITIVE[i + 1]} film", "label": 1} for i in range(5)]
    rows += [{"text": f"{NEGATIVE[i]} and {NEGATIVE[i + 2]} film", "label": 1} for i in range(3)]
    path = write(rows, fmt, tmp_path, "labelled", monkeypatch)
    kept = st.filter(path, str(tmp_path / "kept.jsonl"), scorer="classifier", task=str(task),
                     real=str(task / "train.jsonl"), featurizer=WordCounts.name, keep_fraction=0.625, judge=False)
    assert kept["output"] == 5 and kept.rows["text"] == [r["text"] for r in rows[:5]]


def test_the_command_line_curates_a_csv_by_its_column(tmp_path, monkeypatch, capsys):
    path = write(REVIEWS, "csv", tmp_path, "reviews", monkeypatch)
    code, err = run_synthtune(["curate", "--input", path, "--output", str(tmp_path / "out.jsonl"), "--field",
                               "review", "--num_samples", "4", "--clusters", "2", "--svd_components", "2"], capsys)
    assert code == 0, err
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 4
    code, err = run_synthtune(["curate", "--input", path, "--output", str(tmp_path / "o.jsonl"), "--streaming",
                               "true"], capsys)
    assert code != 0 and "streaming path reads JSONL or Parquet" in err and "Traceback" not in err


@pytest.mark.parametrize("value, text", [(5, "5"), (4.5, "4.5"), (5.0, "5"), (True, "true"), (False, "false"),
                                         ("five", "five")])
def test_a_template_writes_numbers_and_booleans_as_text(value, text, tmp_path):
    (tmp_path / "r.jsonl").write_text(json.dumps({"review": "ok", "stars": value}) + "\n")
    assert TextDataModule(str(tmp_path / "r.jsonl"), text_template="{review}: {stars}").load_texts() == [f"ok: {text}"]


@pytest.mark.parametrize("row, message", [({"review": "ok", "stars": None}, "row 0 field 'stars' is null"),
                                          ({"review": "ok", "stars": [5]}, "row 0 field 'stars' is [5] (list)"),
                                          ({"review": "ok"}, "row 0 lacks field(s) stars")])
def test_a_missing_or_null_template_field_is_one_line(row, message, tmp_path):
    (tmp_path / "r.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(SynthtuneError, match=re.escape(message)):
        TextDataModule(str(tmp_path / "r.jsonl"), text_template="{review}: {stars}").load_texts()


def test_an_empty_csv_cell_is_missing_and_a_split_that_is_not_there_is_one_line(tmp_path):
    (tmp_path / "r.csv").write_text("review,stars\nok,\n")
    with pytest.raises(SynthtuneError, match="row 0 field 'stars' is null"):
        TextDataModule(str(tmp_path / "r.csv"), text_template="{review}: {stars}").load_texts()
    DatasetDict({"test": Dataset.from_list(REVIEWS)}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(SynthtuneError, match=r"holds the splits test, not 'train'"):
        read_records(tmp_path / "saved")
    assert len(read_records(tmp_path / "saved", split="test")) == 12
    (tmp_path / "notes.txt").write_text("just words\n")
    with pytest.raises(SynthtuneError, match="unsupported file type '.txt'"):
        read_records(tmp_path / "notes.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(SynthtuneError, match="is a folder, not a rows file nor a datasets save_to_disk folder"):
        read_records(tmp_path / "folder")


def test_the_pipeline_decontaminates_against_a_csv_reference(tiny_llama, tmp_path, monkeypatch):
    from pipeline.test_pipeline import QUESTIONS, sections
    from synthtune.commands.pipeline import pipeline

    files = tmp_path / "files"
    files.mkdir()
    (files / "train.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    pd.DataFrame({"question": QUESTIONS[:6], "id": range(6)}).to_csv(files / "test.csv", index=False)
    every = sections(files, tiny_llama)
    chosen = {name: every[name] for name in ("fit", "predict", "decontaminate")}
    chosen["decontaminate"] = {**chosen["decontaminate"], "reference": str(files / "test.csv")}
    monkeypatch.chdir(tmp_path)
    done = pipeline(root="pipe", **chosen)
    report = done["decontaminate"]["report"]
    assert report["num_references"] == 6 and report["broken_lines_skipped"] == 0
    assert done["decontaminate"]["rows"] == report["output"]

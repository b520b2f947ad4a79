"""The data functions of synthtune.api take rows in memory (a datasets.Dataset or a list of dicts) and return the
rows they kept as a datasets.Dataset, so they chain without files; export writes the dataset card the pipeline
writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from datasets import Dataset, load_from_disk
from huggingface_hub import DatasetCard

import synthtune.api as st
from cli_runner import run_synthtune
from commands.test_filter import NEGATIVE, POSITIVE, WordCounts, task  # noqa: F401 - the task fixture
from synthtune.components.encoders import register_featurizer
from synthtune.errors import SynthtuneError

COLOURS = ["red", "green", "blue", "gold", "pink", "grey", "teal", "plum", "rust", "sand", "jade", "navy"]
FRUIT = ["apples", "pears", "figs", "plums", "limes", "dates", "kiwis", "grapes", "melons", "lemons", "cherries", "peaches"]
#: Twelve texts that share no 5-gram (each its own words but for "and" and "the").
TEXTS = [f"{c} {f} and {COLOURS[i - 1]} {FRUIT[i - 2]} fill the cart number {i}" for i, (c, f) in
         enumerate(zip(COLOURS, FRUIT))]


def test_curate_then_decontaminate_chain_without_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [{"text": text, "id": i} for i, text in enumerate(TEXTS + TEXTS[:3])]  # three duplicates
    curated = st.curate(rows, num_samples=8, clusters=2, svd_components=4)
    assert isinstance(curated.rows, Dataset) and len(curated.rows) == curated["selected"] == 8
    assert curated["input_path"] == "the rows given" and curated["output_path"] is None
    reference = Dataset.from_list([{"question": TEXTS[i]} for i in range(12)
                                   if i in set(curated.rows["id"][:2])])  # two kept rows are in the test set
    clean = st.decontaminate(curated.rows, reference, reference_field="question", ngram=5)
    assert clean["decontaminated_dropped"] == 2 and len(clean.rows) == 6
    assert set(clean.rows["id"]) == set(curated.rows["id"][2:])
    assert list(tmp_path.iterdir()) == []  # no output named: nothing written
    # the report is still a plain dict a JSON file holds
    assert json.loads(json.dumps(clean))["output"] == 6


def test_a_file_input_still_writes_its_output_and_report_and_returns_the_rows(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS) + "{broken\n")
    clean = st.decontaminate(str(path), [{"text": TEXTS[0]}], str(tmp_path / "out.jsonl"), ngram=5)
    assert clean["broken_lines_skipped"] == 1 and clean["output"] == 11
    assert [json.loads(line)["text"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == \
        clean.rows["text"] == TEXTS[1:]
    assert json.loads((tmp_path / "out.jsonl.report.json").read_text())["output"] == 11


def test_filter_takes_a_dataset_and_returns_the_kept_rows(task, tmp_path):  # noqa: F811
    register_featurizer(WordCounts.name, WordCounts)
    rows = [{"text": f"{POSITIVE[i]} and {POSITIVE[i + 1]} film", "label": 1} for i in range(5)]
    rows += [{"text": f"{NEGATIVE[i]} and {NEGATIVE[i + 2]} film", "label": 1} for i in range(3)]  # off label
    kept = st.filter(Dataset.from_list(rows), scorer="classifier", task=str(task), real=str(task / "train.jsonl"),
                     featurizer=WordCounts.name, keep_fraction=0.625, judge=False)
    assert kept["output"] == 5 and kept.rows["text"] == [r["text"] for r in rows[:5]]
    assert "filter_score" in kept.rows.column_names and list(tmp_path.iterdir()) == []


def test_rows_that_are_not_dicts_or_streaming_from_memory_are_one_line():
    with pytest.raises(SynthtuneError, match="row 1 is a str, not a dict"):
        st.decontaminate([{"text": "a b"}, "a b"], [{"text": "c"}])
    with pytest.raises(SynthtuneError, match="the streaming path reads JSONL or Parquet files into an output, not the rows given"):
        st.curate([{"text": "a b"}], streaming=True)


def test_the_command_line_still_needs_output_and_takes_a_path(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    code, err = run_synthtune(["decontaminate", "--input", str(path), "--reference", str(path)], capsys)
    assert code == 2 and "required" in err and "output" in err


def test_export_writes_the_pipelines_dataset_card(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    config = {"model": {"class_path": "synthtune.lightning_modules.SoftSRVModule",
                        "init_args": {"backbone": "smollm2-135m"}},
              "data": {"class_path": "synthtune.datamodules.TextDataModule",
                       "init_args": {"path": "data/reviews.jsonl", "text_template": "{review}"}}}
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(config))
    run = st.Run(tmp_path / "run", tmp_path / "run" / "config.yaml", tmp_path / "run" / "last.ckpt")
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)]
    clean = st.decontaminate(rows, [{"text": TEXTS[0]}], ngram=5)
    dataset = st.export(clean.rows, "export", name="my reviews", run=run, reports={"decontaminate": clean},
                        license="cc-by-4.0", language="en")
    assert len(load_from_disk("export/dataset")) == len(dataset) == 11
    assert Path("export/data.parquet").is_file()
    card = DatasetCard.load(Path("export/README.md"))
    data = card.data.to_dict()
    assert data["pretty_name"] == "my reviews" and data["license"] == "cc-by-4.0" and data["language"] == ["en"]
    assert data["size_categories"] == ["n<1K"] and data["task_categories"] == ["text-classification"]
    assert data["source_datasets"] == ["extended|reviews"] and "synthtune" in data["tags"]
    assert "- method: `synthtune.lightning_modules.SoftSRVModule`" in card.text
    assert "license: apache-2.0" in card.text  # the bundled backbone's
    assert "- decontamination: 1 rows dropped" in card.text and "| export | 11 |" in card.text
    assert DatasetCard.load(Path("export/dataset/README.md")).text == card.text
    with pytest.raises(SynthtuneError, match="not 'align'"):
        st.export(clean.rows, "export2", reports={"align": {}})

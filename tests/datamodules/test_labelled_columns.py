"""Labelled rows on the user's terms (issue 32, item 2): ``text_field``/``label_field`` name the columns, the label
names are given or read from the data (no task folder, no ``meta.json``), a label works as a name or an index, and
an unknown label or a missing column is one line naming the row."""

import csv
import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from synthtune.datamodules.fewshot import FewShotDataModule
from synthtune.datamodules.labeled import LabeledDataModule
from synthtune.datamodules.synalign_demos import DemonstrationDataModule
from synthtune.errors import SynthtuneError
from synthtune.tasks import label_names_in

REVIEWS = Path(__file__).resolve().parents[2] / "docs" / "your_data" / "reviews.csv"


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_dawgen_data_reads_the_csv_columns_and_its_label_names(tiny_llama):
    dm = LabeledDataModule(train_path=str(REVIEWS), text_field="review", backbone=tiny_llama, num_per_label=2)
    dm.setup("fit")
    assert dm.label_names == ("negative", "positive") and dm.task.name == "reviews"
    source = list(csv.DictReader(REVIEWS.open(encoding="utf-8")))
    assert [r["text"] for r in dm.rows] == [r["review"] for r in source]
    assert [dm.label_names[r["label"]] for r in dm.rows] == [r["label"] for r in source]
    info = dm.describe()
    assert info.label_names == ("negative", "positive") and info.text_fields == ("text",)
    assert [item["label_name"] for item in dm.predict_dataloader().dataset.items] == ["negative"] * 2 + ["positive"] * 2


def test_another_column_is_the_label_and_numbers_sort_by_value(tmp_path, tiny_llama):
    dm = LabeledDataModule(train_path=str(REVIEWS), text_field="review", label_field="stars", backbone=tiny_llama)
    assert dm.label_names == ("1", "2", "3", "4", "5")
    rows = [{"body": f"text {i}", "grade": g} for i, g in enumerate(["10", "9", "10", "2"])]
    dm = LabeledDataModule(train_path=write_csv(tmp_path / "g.csv", rows), text_field="body", label_field="grade",
                           backbone=tiny_llama)
    assert dm.label_names == ("2", "9", "10")
    assert [r["label"] for r in dm.load_rows()] == [2, 1, 2, 0]


def test_a_label_as_a_name_or_an_index_both_work(tmp_path, tiny_llama):
    rows = [{"t": "good", "y": "pos"}, {"t": "bad", "y": 0}, {"t": "fine", "y": 1}, {"t": "awful", "y": "neg"}]
    dm = LabeledDataModule(train_path=write_jsonl(tmp_path / "r.jsonl", rows), text_field="t", label_field="y",
                           label_names=["neg", "pos"], backbone=tiny_llama)
    assert [r["label"] for r in dm.load_rows()] == [1, 0, 1, 0]


def test_an_unknown_label_is_one_line_naming_the_row_and_the_labels(tmp_path, tiny_llama):
    rows = [{"review": "good", "label": "positive"}, {"review": "meh", "label": "neutral"}]
    dm = LabeledDataModule(train_path=write_csv(tmp_path / "r.csv", rows), text_field="review",
                           label_names=["negative", "positive"], backbone=tiny_llama)
    with pytest.raises(SynthtuneError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "row 1 has label 'neutral'" in message and "['negative', 'positive']" in message and "\n" not in message


def test_a_missing_column_names_the_options_to_set(tiny_llama):
    dm = LabeledDataModule(train_path=str(REVIEWS), backbone=tiny_llama, label_names=["negative", "positive"])
    with pytest.raises(SynthtuneError, match=r"row 0 lacks column\(s\) text \(it has label, product, review, "
                                             r"stars\); name the text and label columns with text_field"):
        dm.setup("fit")


def test_label_names_from_the_data_refuse_numbers_that_are_not_indices():
    assert label_names_in([{"label": 1}, {"label": 0}], "label", "x") == ("0", "1")
    named = [{"label": 1, "label_name": "yes"}, {"label": 0, "label_name": "no"}]
    assert label_names_in(named, "label", "x") == ("no", "yes")
    with pytest.raises(SynthtuneError, match=r"the 'label' values are the numbers \[1, 5\].*pass label_names"):
        label_names_in([{"label": 1}, {"label": 5}], "label", "x")
    with pytest.raises(SynthtuneError, match="no row has a 'stars' field"):
        label_names_in([{"label": 1}], "stars", "x")


def test_text_field_on_a_pair_task_is_refused():
    with pytest.raises(SynthtuneError, match="sentence-pair task.*drop text_field"):
        LabeledDataModule("rte", text_field="premise").load_task()


def test_prompt_tuning_data_samples_train_and_dev_from_a_csv_and_tests_on_another(tmp_path):
    source = list(csv.DictReader(REVIEWS.open(encoding="utf-8")))
    test = write_csv(tmp_path / "test.csv", source[:6])
    dm = FewShotDataModule(train_path=str(REVIEWS), test_path=test, text_field="review", k=4, seed=13)
    dm.setup(None)
    assert dm.describe().label_names == ("negative", "positive")
    assert Counter(r["label"] for r in dm.train_real) == {0: 4, 1: 4} and len(dm.dev_rows) == 8
    assert not {r["text"] for r in dm.train_real} - {r["review"] for r in source}
    assert [r["text"] for r in dm.test_rows] == [r["review"] for r in source[:6]]


def test_prompt_tuning_synthetic_rows_may_carry_the_real_label_column(tmp_path):
    """A SoftSRV set that carried the label column (``carry_fields [sentiment]``) is read by that column."""
    real = write_csv(tmp_path / "real.csv", [{"body": f"real {i}", "sentiment": "good" if i % 2 else "bad"}
                                             for i in range(8)])
    syn = write_jsonl(tmp_path / "syn.jsonl", [{"text": f"syn {i}", "sentiment": "good", "id": i} for i in range(3)])
    dm = FewShotDataModule(train_path=real, text_field="body", label_field="sentiment", k=2, synthetic=syn,
                           strategy="real+syn")
    dm.setup("fit")
    assert [(r["text"], r["label"]) for r in dm.train_syn] == [("syn 0", 1), ("syn 1", 1), ("syn 2", 1)]


def test_demonstrations_without_a_task_take_the_names_select_wrote(tmp_path):
    rows = [{"review": "great", "label": 1, "label_name": "positive", "cluster": 0},
            {"review": "awful", "label": 0, "label_name": "negative", "cluster": 1}]
    dm = DemonstrationDataModule(write_jsonl(tmp_path / "demos.jsonl", rows), text_field="review", gen_size=2)
    dm.setup("predict")
    assert [(c["label_name"], c["texts"]) for c in dm.clusters] == [("positive", ["great"]), ("negative", ["awful"])]
    mine = [{"body": "great", "mood": "happy"}, {"body": "sad text", "mood": "sad"}]
    dm = DemonstrationDataModule(write_jsonl(tmp_path / "mine.jsonl", mine), text_field="body", label_field="mood",
                                 label_names=["sad", "happy"], gen_size=2)
    dm.setup("predict")
    assert [(c["label"], c["label_name"]) for c in dm.clusters] == [(1, "happy"), (0, "sad")]


def test_given_rows_take_label_names_for_a_task_without_a_folder():
    """synalign evaluate --classifier prompt_tuning on rows of your own: the names come with the rows, no meta.json."""
    from synthtune.datamodules.given_rows import GivenRowsDataModule

    rows = [{"text": "a dull film", "label": 0}, {"text": "a warm film", "label": 1}]
    data = GivenRowsDataModule("my-reviews", rows, rows, label_names=["negative", "positive"])
    assert data.describe().label_names == ("negative", "positive")
    with pytest.raises(SynthtuneError, match="no label_names"):
        GivenRowsDataModule("my-reviews", rows, rows)

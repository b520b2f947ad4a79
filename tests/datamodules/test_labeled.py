import json
from collections import Counter

import pytest
import torch

from synthtune.datamodules.labeled import LabeledDataModule, sample_kshot
from synthtune.errors import SynthtuneError


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture()
def pair_task(tmp_path):
    folder = tmp_path / "toy_nli"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"label_names": ["yes", "no"], "fields": ["text_a", "text_b", "label"]}))
    rows = [{"text_a": f"premise number {i}", "text_b": f"hypothesis {i}", "label": i % 2} for i in range(6)]
    write(folder / "train.jsonl", rows)
    return folder


def test_kshot_split_gives_labelled_batches(tiny_llama):
    dm = LabeledDataModule("sst2", backbone=tiny_llama, seed=42, batch_size=8, max_length=12)
    dm.setup("fit")
    assert len(dm.rows) == 32 and Counter(r["label"] for r in dm.rows) == {0: 16, 1: 16}
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"target_ids", "target_mask", "context_ids", "context_mask", "label", "index"}
    assert batch["target_ids"].shape[0] == 8 and batch["target_ids"].shape[1] <= 12
    assert batch["context_ids"].shape == (8, 0)
    lengths = batch["target_mask"].sum(1)
    eos = dm.tokenizer.eos_token_id
    assert len(lengths) == 8 and all(batch["target_ids"][i, n - 1] == eos for i, n in enumerate(lengths.tolist()))
    for i, idx in enumerate(batch["index"].tolist()):
        assert batch["label"][i] == dm.rows[idx]["label"]


def test_task_without_kshot_split_samples_k_per_label_by_seed(tiny_llama):
    a = LabeledDataModule("sick", backbone=tiny_llama, seed=13, k=4)
    a.setup("fit")
    assert Counter(r["label"] for r in a.rows) == {0: 4, 1: 4, 2: 4}
    again = LabeledDataModule("sick", backbone=tiny_llama, seed=13, k=4)
    again.setup("fit")
    other = LabeledDataModule("sick", backbone=tiny_llama, seed=21, k=4)
    other.setup("fit")
    assert a.rows == again.rows and a.rows != other.rows
    rows = [{"label": i % 2} for i in range(5)]
    assert len(sample_kshot(rows, 2, 10, 0)) == 5  # fewer than k: all of them


def test_pair_batches_and_predict_draw_text_a_from_real_first_sentences(pair_task, tiny_llama):
    dm = LabeledDataModule(str(pair_task), backbone=tiny_llama, train_path=str(pair_task / "train.jsonl"),
                           batch_size=4, num_per_label=5)
    dm.setup("fit")
    batch = dm.collate([dm._items[0], dm._items[1]])
    n_ctx = int(batch["context_mask"][0].sum())
    assert dm.tokenizer.decode(batch["context_ids"][0, :n_ctx]) == "premise number 0\n"
    rows = [r for b in dm.predict_dataloader() for r in zip(b["id"].tolist(), b["label"].tolist(), b["text_a"])]
    assert [r[0] for r in rows] == list(range(10))
    assert Counter(r[1] for r in rows) == {0: 5, 1: 5}
    real = {r["text_a"] for r in dm.rows}
    assert all(r[2] in real for r in rows) and len({r[2] for r in rows}) == 6
    first = next(iter(dm.predict_dataloader()))
    assert first["context_ids"].shape[0] == 4 and first["label_name"][:2] == ["yes", "yes"]


def test_predict_respects_per_label_counts_and_skips_finished_ids(tiny_llama):
    dm = LabeledDataModule("sst2", backbone=tiny_llama, num_per_label=4, batch_size=3)
    dm.skip_ids({0, 5, 6})
    batches = list(dm.predict_dataloader())
    ids = [i for b in batches for i in b["id"].tolist()]
    labels = [lab for b in batches for lab in b["label"].tolist()]
    assert ids == [1, 2, 3, 4, 7]
    assert labels == [0, 0, 0, 1, 1]
    assert batches[0]["label_name"] == ["negative"] * 3 and "context_ids" not in batches[0]


@pytest.mark.parametrize("rows, message", [
    ([{"text": "a", "label": 0}, {"text": "b", "label": 7}], r"label 7, outside the label set"),
    ([{"text": "a", "label": 0}, {"text": "b", "label": "neutral"}], r"outside the label set"),
    ([{"text": "a", "label": 0}, {"text": "b", "label": 0}], r"label\(s\) positive have zero examples"),
])
def test_bad_labels_get_one_line_errors(tmp_path, tiny_llama, rows, message):
    dm = LabeledDataModule("sst2", backbone=tiny_llama, train_path=write(tmp_path / "t.jsonl", rows))
    with pytest.raises(SynthtuneError, match=message) as info:
        dm.setup("fit")
    assert "\n" not in str(info.value)


def test_pair_task_without_text_b_is_refused(tmp_path, tiny_llama):
    rows = [{"text_a": "x", "label": 0}, {"text_a": "y", "text_b": "z", "label": 1}]
    dm = LabeledDataModule("rte", backbone=tiny_llama, train_path=write(tmp_path / "t.jsonl", rows))
    with pytest.raises(SynthtuneError, match="row 0 has no text_b"):
        dm.setup("fit")


def test_missing_split_and_bad_sizes(tiny_llama, tmp_path):
    with pytest.raises(SynthtuneError, match="training file not found"):
        LabeledDataModule("sst2", backbone=tiny_llama, train_path=str(tmp_path / "nope.jsonl")).setup("fit")
    with pytest.raises(SynthtuneError, match="max_length"):
        LabeledDataModule("sst2", backbone=tiny_llama, max_length=1)
    empty = LabeledDataModule("sst2", backbone=tiny_llama, num_per_label=0)
    assert list(empty.predict_dataloader()) == []
    assert torch.equal(empty.collate([{"target": [1, 2], "context": [], "label": 1, "index": 0}])["label"],
                       torch.tensor([1]))


def test_generation_batches_have_their_own_size(tiny_llama):
    dm = LabeledDataModule("sst2", backbone=tiny_llama, num_per_label=5, batch_size=2, predict_batch_size=4)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["label"].shape[0] == 2
    assert [b["id"].shape[0] for b in dm.predict_dataloader()] == [4, 4, 2]
    unset = LabeledDataModule("sst2", backbone=tiny_llama, num_per_label=5, batch_size=3)
    assert [b["id"].shape[0] for b in unset.predict_dataloader()] == [3, 3, 3, 1]
    with pytest.raises(SynthtuneError, match="predict_batch_size ≥ 1"):
        LabeledDataModule("sst2", backbone=tiny_llama, predict_batch_size=0)

import json
import logging

import pandas as pd
import pytest

from synthtune.datamodules.resumable import ResumableDataLoader, ResumableSampler
from synthtune.datamodules.text import TextDataModule
from synthtune.errors import SynthtuneError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


ROWS = [{"question": f"How many apples does person {i} have?", "answer": str(i)} for i in range(20)]


def test_template_tokens_eos_and_seeded_split(tiny_llama, tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", ROWS)
    dm = TextDataModule(path, "Q: {question}", backbone=tiny_llama, val_fraction=0.25, batch_size=4, seed=3)
    dm.setup("fit")
    assert len(dm.train_texts) == 15 and len(dm.val_texts) == 5
    assert all(t.startswith("Q: How many") for t in dm.train_texts)
    again = TextDataModule(path, "Q: {question}", backbone=tiny_llama, val_fraction=0.25, seed=3)
    again.setup("fit")
    assert again.val_texts == dm.val_texts
    batch = next(iter(dm.train_dataloader()))
    eos = dm.tokenizer.eos_token_id
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
        assert ids[mask.bool()][-1] == eos  # every example ends with EOS


def test_csv_and_parquet(tiny_llama, tmp_path):
    pd.DataFrame(ROWS).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(ROWS).to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        dm = TextDataModule(str(tmp_path / name), "{question}", backbone=tiny_llama)
        dm.setup("fit")
        assert len(dm.train_texts) == 20


def test_truncation_is_one_warning_with_the_count(tiny_llama, tmp_path, caplog):
    rows = ROWS[:3] + [{"question": "word " * 200}]
    dm = TextDataModule(_jsonl(tmp_path / "d.jsonl", rows), "{question}", backbone=tiny_llama, max_length=40)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    messages = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert messages == ["1 of 4 examples are longer than max_length=40 tokens and were truncated"]
    assert max(len(x) for x in dm._train_ids) == 40


def test_bad_input_is_one_line(tiny_llama, tmp_path):
    with pytest.raises(SynthtuneError, match="data file not found"):
        TextDataModule(str(tmp_path / "missing.jsonl"), backbone=tiny_llama).setup("fit")
    path = _jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(SynthtuneError, match=r"row 0 lacks field\(s\) query"):
        TextDataModule(path, "{query}", backbone=tiny_llama).setup("fit")
    empty = _jsonl(tmp_path / "e.jsonl", [{"question": "  "}, {"question": ""}])
    with pytest.raises(SynthtuneError, match="no examples left after filtering"):
        TextDataModule(empty, "{question}", backbone=tiny_llama).setup("fit")
    (tmp_path / "blank.jsonl").write_text("")
    with pytest.raises(SynthtuneError, match="no examples left"):
        TextDataModule(str(tmp_path / "blank.jsonl"), "{question}", backbone=tiny_llama).setup("fit")


def test_limit_takes_a_seeded_subset(tiny_llama, tmp_path):
    dm = TextDataModule(_jsonl(tmp_path / "d.jsonl", ROWS), "{question}", backbone=tiny_llama, limit=5, seed=1)
    dm.setup("fit")
    assert len(dm.train_texts) == 5


def test_predict_ids_cycle_over_contexts_and_skip_done_ones(tiny_llama, tmp_path):
    dm = TextDataModule(_jsonl(tmp_path / "d.jsonl", ROWS[:3]), "{question}", backbone=tiny_llama,
                        num_samples=7, batch_size=10)
    dm.setup("predict")
    dm.skip_ids({1, 4})
    batch = next(iter(dm.predict_dataloader()))
    assert batch["id"].tolist() == [0, 2, 3, 5, 6]
    assert batch["context_index"].tolist() == [0, 2, 0, 2, 0]


def test_generation_batches_have_their_own_size(tiny_llama, tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", ROWS[:3])
    dm = TextDataModule(path, "{question}", backbone=tiny_llama, num_samples=7, batch_size=2, predict_batch_size=5)
    dm.setup("predict")
    assert [b["id"].tolist() for b in dm.predict_dataloader()] == [[0, 1, 2, 3, 4], [5, 6]]
    same = TextDataModule(path, "{question}", backbone=tiny_llama, num_samples=3, batch_size=2)
    same.setup("predict")
    assert [len(b["id"]) for b in same.predict_dataloader()] == [2, 1]  # default: batch_size
    with pytest.raises(SynthtuneError, match="predict_batch_size must be ≥ 1"):
        TextDataModule(path, "{question}", backbone=tiny_llama, predict_batch_size=0)


def test_context_indices_file_sets_each_samples_context_and_bad_files_are_one_line(tiny_llama, tmp_path):
    order = tmp_path / "contexts.json"
    order.write_text(json.dumps([2, 0, 1]))
    dm = TextDataModule(_jsonl(tmp_path / "d.jsonl", ROWS[:3]), "{question}", backbone=tiny_llama,
                        num_samples=7, batch_size=10, context_indices=str(order))
    dm.setup("predict")
    dm.skip_ids({1})
    batch = next(iter(dm.predict_dataloader()))
    assert batch["id"].tolist() == [0, 2, 3, 4, 5, 6]
    assert batch["context_index"].tolist() == [2, 1, 2, 0, 1, 2]  # sample i -> order[i % 3]
    for content, message in (("[0, 3]", r"integers in \[0, 3\)"), ("[]", "non-empty"), ("{", "cannot read")):
        order.write_text(content)
        with pytest.raises(SynthtuneError, match=message):
            dm.predict_dataloader()


def test_resumable_sampler_skips_consumed_batches_of_the_same_epoch():
    data = list(range(10))
    full = ResumableDataLoader(data, batch_size=3, sampler=ResumableSampler(data, 3, seed=5))
    full.sampler.set_epoch(2)
    expected = [b.tolist() for b in full]
    resumed = ResumableDataLoader(data, batch_size=3, sampler=ResumableSampler(data, 3, seed=5))
    resumed.load_state_dict({"epoch": 2, "consumed_batches": 2})
    resumed.sampler.set_epoch(2)  # Lightning sets the same epoch again: the skip survives
    assert [b.tolist() for b in resumed] == expected[2:]
    resumed.sampler.set_epoch(3)  # the next epoch is whole again
    assert sum(len(b) for b in resumed) == 10
    assert len(resumed) == 4

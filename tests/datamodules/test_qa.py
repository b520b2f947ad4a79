import json

import pytest
import torch

from synthtune.datamodules.qa import (
    IGNORE_INDEX,
    QADataModule,
    build_example,
    collate_examples,
)
from synthtune.errors import SynthtuneError

ROWS = [{"question": f"Tom has {i} apples and buys 2 more. How many now?",
         "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"} for i in range(10)]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_build_example_puts_labels_on_the_answer_and_eos_only():
    ex = build_example([1, 2, 3], [7, 8], eos_id=0, max_length=10)
    assert ex["input_ids"] == [1, 2, 3, 7, 8, 0]
    assert ex["labels"] == [IGNORE_INDEX] * 3 + [7, 8, 0]
    cut = build_example([1, 2, 3], [7, 8, 9, 10], eos_id=0, max_length=5)
    assert cut["input_ids"] == [1, 2, 3, 7, 8] and cut["labels"][-2:] == [7, 8]
    assert build_example([1, 2, 3, 4], [7], eos_id=0, max_length=5) is None


def test_collate_pads_inputs_and_ignores_padding_in_the_loss():
    batch = collate_examples([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
                              {"input_ids": [5], "labels": [5]}], pad_id=9)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 9, 9]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_training_batches_have_loss_on_the_answer_only(tiny_llama, tmp_path):
    dm = QADataModule(write(tmp_path / "qa.jsonl", ROWS), backbone=tiny_llama, batch_size=4)
    dm.setup("fit")
    assert len(dm.train_examples) == 10
    batch = next(iter(dm.train_dataloader()))
    tok = dm.tokenizer
    for ids, labels in zip(batch["input_ids"], batch["labels"]):
        answer = [t for t, lab in zip(ids.tolist(), labels.tolist()) if lab != IGNORE_INDEX]
        text = tok.decode(answer[:-1])
        assert answer[-1] == tok.eos_token_id and text.startswith(" ") and "####" in text
        prompt = tok.decode([t for t, lab, m in zip(ids.tolist(), labels.tolist(), batch["attention_mask"][0].tolist())
                             if lab == IGNORE_INDEX and m])
        assert prompt.startswith("Question: Tom has") and prompt.endswith("Answer:")


def test_val_split_and_limit(tiny_llama, tmp_path):
    dm = QADataModule(write(tmp_path / "qa.jsonl", ROWS), backbone=tiny_llama, limit=6, val_fraction=0.5)
    dm.setup("fit")
    assert len(dm.train_examples) == 3 and len(dm.val_examples) == 3
    assert len(list(dm.val_dataloader())) == 1


def test_test_split_holds_prompts_and_gold_numbers(tiny_llama, tmp_path):
    test = write(tmp_path / "test.jsonl", ROWS[:5] + [{"question": "Odd?", "answer": "no number here"}])
    dm = QADataModule(write(tmp_path / "qa.jsonl", ROWS), backbone=tiny_llama, test_path=test, batch_size=4)
    dm.setup("test")
    assert [i["gold"] for i in dm.test_items] == ["2", "3", "4", "5", "6"]
    batch = next(iter(dm.test_dataloader()))
    assert batch["prompt"][0] == "Question: " + ROWS[0]["question"] + "\nAnswer:"
    assert batch["use_chat_template"] is False and batch["index"].tolist() == [0, 1, 2, 3]
    limited = QADataModule(dm.path, backbone=tiny_llama, test_path=test, test_limit=2)
    limited.setup("test")
    assert [i["gold"] for i in limited.test_items] == ["2", "3"]


def test_bad_input_is_one_line(tiny_llama, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cases = [
        (QADataModule(str(empty), backbone=tiny_llama), "fit", "no \\(question, answer\\) rows"),
        (QADataModule(write(tmp_path / "a.jsonl", [{"question": "q", "text": "a"}]), backbone=tiny_llama),
         "fit", "lacks field\\(s\\) answer"),
        (QADataModule(write(tmp_path / "b.jsonl", ROWS), backbone=tiny_llama), "test", "needs test questions"),
        (QADataModule(write(tmp_path / "c.jsonl", ROWS), backbone=tiny_llama, max_length=8), "fit", "raise it"),
    ]
    for dm, stage, message in cases:
        with pytest.raises(SynthtuneError, match=message) as info:
            dm.setup(stage)
        assert "\n" not in str(info.value)
    with pytest.raises(SynthtuneError, match="lacks \\{question\\}"):
        QADataModule("x.jsonl", prompt_template="Q: {text}")


def test_resumable_loader_skips_consumed_batches(tiny_llama, tmp_path):
    dm = QADataModule(write(tmp_path / "qa.jsonl", ROWS), backbone=tiny_llama, batch_size=2)
    dm.setup("fit")
    full = [b["input_ids"] for b in dm.train_dataloader()]
    loader = dm.train_dataloader()
    loader.load_state_dict({"epoch": 0, "consumed_batches": 2})
    resumed = [b["input_ids"] for b in loader]
    assert len(resumed) == len(full) - 2 and all(torch.equal(a, b) for a, b in zip(resumed, full[2:]))

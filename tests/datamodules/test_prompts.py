import json

import pytest

from synthtune.datamodules.prompts import PromptDataModule
from synthtune.errors import SynthtuneError


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def batches(dm):
    return list(dm.predict_dataloader())


def test_pt_requests_are_blocks_of_ids_and_finished_requests_are_skipped():
    dm = PromptDataModule(num_requests=5, batch_size=2)
    dm.setup("predict")
    dm.set_ids_per_item(10)
    # ids 0..2 belong to request 0, id 25 to request 2, id 49 to request 4
    dm.skip_ids({0, 1, 2, 25, 49})
    assert dm.pending_items() == [1, 3]
    got = batches(dm)
    assert [b["index"].tolist() for b in got] == [[1, 3]]
    assert got[0]["question"] == [None, None]


def test_answer_mode_reads_questions_with_row_numbers_as_ids(tmp_path):
    path = write(tmp_path / "q.jsonl", [{"id": 7, "text": "What is 2+2?"}, {"id": 9, "text": "  "},
                                        {"id": 11, "text": "How many legs?"}, {"id": 12, "text": "Why?"}])
    dm = PromptDataModule(path=path, field="text", batch_size=2)
    dm.setup("predict")
    assert dm.has_questions
    dm.skip_ids({3})
    got = batches(dm)
    assert [b["index"].tolist() for b in got] == [[0, 2]]  # row 1 is empty, row 3 is done
    assert got[0]["question"] == ["What is 2+2?", "How many legs?"]
    assert got[0]["source_id"] == [7, 11]


def test_limit_answers_only_the_first_rows(tmp_path):
    path = write(tmp_path / "q.jsonl", [{"text": f"q{i}"} for i in range(10)])
    dm = PromptDataModule(path=path, limit=3)
    dm.setup("predict")
    assert sorted(dm.questions) == [0, 1, 2]


def test_a_field_the_rows_lack_is_one_line(tmp_path):
    path = write(tmp_path / "q.jsonl", [{"question": "What?"}])
    dm = PromptDataModule(path=path, field="text")
    with pytest.raises(SynthtuneError, match="row 0 lacks field") as info:
        dm.setup("predict")
    assert "\n" not in str(info.value)


def test_empty_input_is_one_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("")
    with pytest.raises(SynthtuneError, match="no rows to answer") as info:
        PromptDataModule(path=str(path)).setup("predict")
    assert "\n" not in str(info.value)
    write(path, [{"text": " "}, {"text": ""}])
    with pytest.raises(SynthtuneError, match="every 'text' is empty"):
        PromptDataModule(path=str(path)).setup("predict")


def test_broken_lines_are_skipped_or_fail_when_strict(tmp_path, caplog):
    path = write(tmp_path / "q.jsonl", [{"text": "a"}, "{broken", {"text": "b"}])
    dm = PromptDataModule(path=path)
    dm.setup("predict")
    assert list(dm.questions.values()) == ["a", "b"]
    assert "line 2" in caplog.text
    with pytest.raises(SynthtuneError, match="line 2"):
        PromptDataModule(path=path, strict=True).setup("predict")


def test_bad_arguments():
    with pytest.raises(SynthtuneError):
        PromptDataModule(batch_size=0)
    with pytest.raises(SynthtuneError):
        PromptDataModule(limit=0)


def test_pt_requests_cycle_round_robin_through_the_training_examples(tmp_path):
    path = write(tmp_path / "train.jsonl", [{"passage": f"p{i}", "question": f"q{i}?"} for i in range(3)]
                 + [{"passage": " ", "question": ""}])
    dm = PromptDataModule(train_path=path, text_template="{passage}\n{question}", num_requests=7, batch_size=4)
    dm.setup("predict")
    info = dm.describe()
    # the row whose text is blank is skipped; the rest are rendered through the template, in file order
    assert info.train_texts == ("p0\nq0?", "p1\nq1?", "p2\nq2?") and not info.has_questions
    dm.set_ids_per_item(10)
    dm.skip_ids({40})  # request 4 is done
    got = batches(dm)
    assert [b["index"].tolist() for b in got] == [[0, 1, 2, 3], [5, 6]]
    assert [b["example_index"] for b in got] == [[0, 1, 2, 0], [2, 0]]  # request r uses example r mod 3


def test_training_examples_respect_limit_and_their_errors_are_one_line(tmp_path):
    path = write(tmp_path / "train.jsonl", [{"question": f"q{i}"} for i in range(5)])
    dm = PromptDataModule(train_path=path, text_template="{question}", limit=2)
    dm.setup("predict")
    assert dm.describe().train_texts == ("q0", "q1")
    with pytest.raises(SynthtuneError, match="row 0 lacks field") as info:
        PromptDataModule(train_path=path, text_template="{passage}").setup("predict")
    assert "\n" not in str(info.value)
    blank = write(tmp_path / "blank.jsonl", [{"question": " "}])
    with pytest.raises(SynthtuneError, match="no training examples to seed the requests"):
        PromptDataModule(train_path=blank, text_template="{question}").setup("predict")
    with pytest.raises(SynthtuneError, match="not both"):
        PromptDataModule(path=path, train_path=path)


def test_without_training_examples_requests_have_no_example():
    dm = PromptDataModule(num_requests=2)
    dm.setup("predict")
    assert dm.describe().train_texts == ()
    assert batches(dm)[0]["example_index"] == [None, None]

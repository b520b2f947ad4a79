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

import json
import logging
import os
import socket
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from synthtune.callbacks import JsonlPredictionWriter
from synthtune.callbacks.jsonl_writer import find_shards, is_repetition_loop, merge_rows, shard_path, to_jsonable
from synthtune.errors import SynthtuneError
from synthtune.paths import OutputLock

PARAMS = {"method": "softsrv", "temperature": 0.7, "checkpoint": "abc123"}


class ToyIds(pl.LightningDataModule):
    """Predicts ids 0..n-1, minus those passed to skip_ids (like a generating datamodule)."""

    def __init__(self, n: int = 20, batch_size: int = 4) -> None:
        super().__init__()
        self.n = n
        self.batch_size = batch_size
        self.skipped: set[int] = set()

    def skip_ids(self, ids: set[int]) -> None:
        self.skipped |= set(ids)

    def predict_dataloader(self) -> DataLoader:
        ids = [i for i in range(self.n) if i not in self.skipped]
        return DataLoader(ids, batch_size=self.batch_size, collate_fn=list)


class ToyIdsNoSkip(ToyIds):
    skip_ids = None  # a datamodule that cannot skip


class ToyGenerator(pl.LightningModule):
    """predict_step returns one dict per id; can crash after a number of batches."""

    def __init__(self, params: dict | None = None, crash_at_batch: int | None = None, tag: str = "new") -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.params = dict(PARAMS) if params is None else params
        self.crash_at_batch = crash_at_batch
        self.tag = tag
        self.generated: list[int] = []

    def predict_step(self, batch: list[int], batch_idx: int) -> list[dict]:
        if self.crash_at_batch is not None and batch_idx >= self.crash_at_batch:
            raise RuntimeError("simulated crash")
        self.generated.extend(batch)
        return [
            {"id": i, "text": f"sample {i}", "tag": self.tag, "rank": self.global_rank, "params": self.params}
            for i in batch
        ]


def make_trainer(root: Path, writer: JsonlPredictionWriter) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        callbacks=[writer],
    )


def predict(root: Path, writer: JsonlPredictionWriter, module: ToyGenerator, dm: pl.LightningDataModule) -> None:
    make_trainer(root, writer).predict(module, datamodule=dm, return_predictions=False)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_rows(path: Path, ids, tag: str = "old", params: dict | None = PARAMS, tail: str = "") -> None:
    lines = [json.dumps({"id": i, "text": f"{tag} {i}", "tag": tag, "params": params}) for i in ids]
    path.write_text("".join(line + "\n" for line in lines) + tail)


# ----------------------------------------------------------------------------- pure helpers
def test_merge_rows_keeps_first_occurrence_and_sorts():
    merged = merge_rows([[{"id": 3, "t": "a"}, {"id": 1, "t": "b"}], [{"id": 3, "t": "c"}, {"id": 0, "t": "d"}]])
    assert [(r["id"], r["t"]) for r in merged] == [(0, "d"), (1, "b"), (3, "a")]


def test_find_shards_orders_by_rank_number(tmp_path):
    out = tmp_path / "s[1].jsonl"  # glob characters in the name must not matter
    for rank in (10, 2, 0):
        shard_path(out, rank).write_text("")
    (tmp_path / "s[1].jsonl.rankX.partial.jsonl").write_text("")
    assert find_shards(out) == [shard_path(out, 0), shard_path(out, 2), shard_path(out, 10)]


def test_to_jsonable_converts_tensors_and_tuples():
    assert to_jsonable({"a": torch.tensor(3), "b": (1, torch.tensor([0.5]))}) == {"a": 3, "b": [1, [0.5]]}


# ----------------------------------------------------------------------------- full runs
def test_full_run_writes_each_id_once_to_default_path(tmp_path, capsys):
    writer, module = JsonlPredictionWriter(preview=2), ToyGenerator()
    predict(tmp_path, writer, module, ToyIds(n=10, batch_size=3))

    assert writer.output_file == (tmp_path / "samples.jsonl").absolute()
    rows = read_rows(writer.output_file)
    assert [r["id"] for r in rows] == list(range(10))
    assert rows[4]["text"] == "sample 4" and rows[4]["params"] == PARAMS
    assert sorted(module.generated) == list(range(10))
    assert find_shards(writer.output_file) == []
    out = capsys.readouterr().out
    # Rich wraps long lines anywhere (even inside the path), so compare with all white space removed
    assert "".join(f"wrote 10 samples (10 new) to {writer.output_file}".split()) in "".join(out.split())
    assert "sample 0" in out and "sample 1" in out and "sample 2" not in out


def test_explicit_output_path_and_tensor_ids(tmp_path):
    class TensorIds(ToyGenerator):
        def predict_step(self, batch, batch_idx):
            return [{"id": torch.tensor(i), "text": str(i)} for i in batch]

    out = tmp_path / "nested" / "gen.jsonl"
    writer = JsonlPredictionWriter(output_path=str(out))
    predict(tmp_path, writer, TensorIds(), ToyIds(n=5))
    assert writer.output_file == out
    assert [r["id"] for r in read_rows(out)] == [0, 1, 2, 3, 4]
    assert not (tmp_path / "samples.jsonl").exists()


def test_resume_from_crash_shards_generates_only_missing_ids(tmp_path, caplog):
    out = tmp_path / "samples.jsonl"
    write_rows(out, [0, 1, 2, 3])
    # a 2-rank run crashed: rank 0 cut off mid-line, rank 1 repeats id 3 with other text
    write_rows(shard_path(out, 0), [4, 5, 6], tail='{"id": 7, "text": "sam')
    write_rows(shard_path(out, 1), [3, 12, 13], tag="dup")
    dm, module = ToyIds(n=16, batch_size=4), ToyGenerator()
    with caplog.at_level(logging.INFO):
        writer = JsonlPredictionWriter()
        predict(tmp_path, writer, module, dm)

    assert dm.skipped == {0, 1, 2, 3, 4, 5, 6, 12, 13}
    assert sorted(module.generated) == [7, 8, 9, 10, 11, 14, 15]
    rows = read_rows(out)
    assert [r["id"] for r in rows] == list(range(16))
    assert rows[3]["tag"] == "old"  # the final file's row wins over the shard's duplicate
    assert rows[7]["tag"] == "new" and rows[12]["tag"] == "dup"
    assert find_shards(out) == []
    assert any("broken JSON line" in r.getMessage() for r in caplog.records)
    assert any("9 samples already" in r.getMessage() for r in caplog.records)


def test_real_crash_keeps_written_batches_then_resumes(tmp_path, capsys):
    out = tmp_path / "samples.jsonl"
    with pytest.raises(RuntimeError, match="simulated crash"):
        predict(tmp_path, JsonlPredictionWriter(), ToyGenerator(crash_at_batch=2), ToyIds(n=12, batch_size=3))
    assert not out.exists()
    assert [r["id"] for r in read_rows(shard_path(out, 0))] == [0, 1, 2, 3, 4, 5]

    module = ToyGenerator()
    predict(tmp_path, JsonlPredictionWriter(), module, ToyIds(n=12, batch_size=3))
    assert sorted(module.generated) == [6, 7, 8, 9, 10, 11]
    assert [r["id"] for r in read_rows(out)] == list(range(12))
    assert find_shards(out) == []
    assert "wrote 12 samples (6 new)" in capsys.readouterr().out


def test_shards_are_merged_even_when_nothing_is_left_to_generate(tmp_path):
    out = tmp_path / "samples.jsonl"
    write_rows(shard_path(out, 0), [0, 2, 4])
    write_rows(shard_path(out, 1), [1, 3, 5])
    module = ToyGenerator()
    predict(tmp_path, JsonlPredictionWriter(), module, ToyIds(n=6))
    assert module.generated == []
    assert [r["id"] for r in read_rows(out)] == list(range(6))
    assert find_shards(out) == []


def test_overwrite_replaces_old_file_and_shards(tmp_path):
    out = tmp_path / "samples.jsonl"
    other = {"method": "softsrv", "checkpoint": "old"}
    write_rows(out, range(6), params=other)
    write_rows(shard_path(out, 3), [7], params=other)
    dm, module = ToyIds(n=8), ToyGenerator()
    predict(tmp_path, JsonlPredictionWriter(overwrite=True), module, dm)
    assert dm.skipped == set()
    assert sorted(module.generated) == list(range(8))
    rows = read_rows(out)
    assert [r["id"] for r in rows] == list(range(8))
    assert all(r["tag"] == "new" and r["params"] == PARAMS for r in rows)
    assert find_shards(out) == []


def test_failed_overwrite_leaves_the_old_file_as_it_was(tmp_path):
    """Issue 15, item 3: overwrite never deletes first; the old file goes only when the new one replaces it."""
    out = tmp_path / "samples.jsonl"
    write_rows(out, range(6), params={"method": "softsrv", "checkpoint": "old"})
    before = out.read_bytes()
    with pytest.raises(RuntimeError, match="simulated crash"):
        predict(tmp_path, JsonlPredictionWriter(overwrite=True), ToyGenerator(crash_at_batch=1), ToyIds(n=8))
    assert out.read_bytes() == before
    assert [r["id"] for r in read_rows(shard_path(out, 0))] == [0, 1, 2, 3]  # the new run's first batch


def test_second_writer_of_one_output_is_refused_naming_the_holder(tmp_path):
    """Issue 15, item 1: one writer per output file; the second gets one line naming the first."""
    out = tmp_path / "samples.jsonl"
    write_rows(out, range(3))
    before = out.read_bytes()
    holder = OutputLock(out)
    holder.acquire()
    try:
        module = ToyGenerator()
        with pytest.raises(SynthtuneError) as info:
            predict(tmp_path, JsonlPredictionWriter(), module, ToyIds(n=8))
    finally:
        holder.release()
    message = str(info.value)
    assert "\n" not in message and f"is being written by pid {os.getpid()} on {socket.gethostname()}" in message
    assert module.generated == [] and out.read_bytes() == before
    # once the holder is done, the same command resumes normally
    predict(tmp_path, JsonlPredictionWriter(), ToyGenerator(), ToyIds(n=8))
    assert [r["id"] for r in read_rows(out)] == list(range(8))


class ForeignShardGenerator(ToyGenerator):
    """Simulates a writer that ignored the lock: mid-run, another rank's shard with other params appears."""

    def predict_step(self, batch, batch_idx):
        if batch_idx == 0:
            out = Path(self.trainer.default_root_dir) / "samples.jsonl"
            write_rows(shard_path(out, 5), [100, 101], tag="foreign", params={**PARAMS, "temperature": 0.5})
        return super().predict_step(batch, batch_idx)


def test_merge_checks_the_params_of_every_shard_it_folds_in(tmp_path):
    """Issue 15, item 1: the final merge refuses to mix two runs, and keeps every shard for inspection."""
    out = tmp_path / "samples.jsonl"
    write_rows(out, [0, 1])
    before = out.read_bytes()
    with pytest.raises(SynthtuneError, match="mixes samples from different checkpoints/params.*temperature"):
        predict(tmp_path, JsonlPredictionWriter(), ForeignShardGenerator(), ToyIds(n=8))
    assert out.read_bytes() == before
    assert find_shards(out) == [shard_path(out, 0), shard_path(out, 5)]


def test_shard_torn_inside_a_multibyte_character_resumes(tmp_path, caplog):
    """Issue 15, item 4: a crash cut a shard inside "é" (2 bytes in UTF-8); that line is just broken."""
    out = tmp_path / "samples.jsonl"
    write_rows(shard_path(out, 0), [0, 1, 2])
    with shard_path(out, 0).open("ab") as fh:
        fh.write('{"id": 3, "text": "caf'.encode() + "é".encode()[:1])
    module = ToyGenerator()
    with caplog.at_level(logging.WARNING):
        predict(tmp_path, JsonlPredictionWriter(), module, ToyIds(n=6))
    assert sorted(module.generated) == [3, 4, 5]
    assert [r["id"] for r in read_rows(out)] == list(range(6))
    assert "1 broken JSON line(s) at line 4" in caplog.text


def test_output_folder_that_cannot_be_written_is_refused_before_generating(tmp_path):
    """Issue 15, item 6: checked at setup, before the first batch is generated."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    module = ToyGenerator()
    with pytest.raises(SynthtuneError, match=r"cannot write samples to .*not-a-folder.*--writer.output_path"):
        predict(tmp_path, JsonlPredictionWriter(output_path=str(blocker / "out" / "samples.jsonl")), module,
                ToyIds(n=4))
    assert module.generated == []


def test_params_mismatch_refuses_and_loses_nothing(tmp_path):
    out = tmp_path / "samples.jsonl"
    write_rows(out, range(4))
    before = out.read_bytes()
    other = {**PARAMS, "checkpoint": "def456"}
    with pytest.raises(SynthtuneError) as info:
        predict(tmp_path, JsonlPredictionWriter(), ToyGenerator(params=other), ToyIds(n=8))
    message = str(info.value)
    assert "\n" not in message
    assert "another checkpoint/params" in message and "checkpoint" in message
    assert "--writer.overwrite true" in message and "--writer.output_path" in message
    assert out.read_bytes() == before
    shard = shard_path(out, 0)
    assert not shard.exists() or shard.read_text() == ""


def test_params_mismatch_against_a_crashed_shard(tmp_path):
    out = tmp_path / "samples.jsonl"
    write_rows(shard_path(out, 0), [0, 1])
    with pytest.raises(SynthtuneError, match="another checkpoint/params"):
        predict(tmp_path, JsonlPredictionWriter(), ToyGenerator(params={"checkpoint": "x"}), ToyIds(n=4))
    assert [r["id"] for r in read_rows(out)] == [0, 1]  # folded into the final file, not lost


def test_files_already_mixing_params_are_refused_at_setup(tmp_path):
    out = tmp_path / "samples.jsonl"
    write_rows(out, [0, 1])
    write_rows(shard_path(out, 0), [2], params={"checkpoint": "other"})
    module = ToyGenerator()
    with pytest.raises(SynthtuneError, match="mixes samples"):
        predict(tmp_path, JsonlPredictionWriter(), module, ToyIds(n=4))
    assert module.generated == []
    assert shard_path(out, 0).exists()


def test_datamodule_without_skip_ids_regenerates_but_keeps_old_rows(tmp_path, caplog):
    out = tmp_path / "samples.jsonl"
    write_rows(out, [0, 1, 2])
    module = ToyGenerator()
    with caplog.at_level(logging.WARNING):
        predict(tmp_path, JsonlPredictionWriter(), module, ToyIdsNoSkip(n=5))
    assert sorted(module.generated) == [0, 1, 2, 3, 4]
    assert [r["tag"] for r in read_rows(out)] == ["old", "old", "old", "new", "new"]
    assert any("no skip_ids" in r.getMessage() for r in caplog.records)


def test_bad_predict_step_output_is_a_one_line_error(tmp_path):
    class NoIds(ToyGenerator):
        def predict_step(self, batch, batch_idx):
            return [{"text": "x"} for _ in batch]

    class NotAList(ToyGenerator):
        def predict_step(self, batch, batch_idx):
            return {"id": 0, "text": "x"}

    with pytest.raises(SynthtuneError, match="integer 'id'"):
        predict(tmp_path, JsonlPredictionWriter(), NoIds(), ToyIds(n=2))
    with pytest.raises(SynthtuneError, match="must return a list of dicts"):
        predict(tmp_path, JsonlPredictionWriter(), NotAList(), ToyIds(n=2))


def test_foreign_file_without_ids_is_refused(tmp_path):
    out = tmp_path / "samples.jsonl"
    out.write_text('{"text": "not ours"}\n')
    with pytest.raises(SynthtuneError, match="not a samples file"):
        predict(tmp_path, JsonlPredictionWriter(), ToyGenerator(), ToyIds(n=2))


# ----------------------------------------------------------------------------- DDP
def ddp_predict(root: Path, out: Path, module: ToyGenerator) -> None:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_fork",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        callbacks=[JsonlPredictionWriter(output_path=str(out))],
    )
    trainer.predict(module, datamodule=ToyIds(n=23, batch_size=3), return_predictions=False)


def test_two_process_ddp_writes_each_id_exactly_once(tmp_path, capfd):
    """Two gloo ranks on CPU. ``ddp_fork`` runs the same callback code as ``ddp`` (one process per
    rank, gloo barriers), but forked children reuse this process's imports instead of paying ~10 s
    each to import torch and Lightning again."""
    out = tmp_path / "samples.jsonl"
    # left over from a crashed 3-rank run, resumed here by 2 ranks
    write_rows(shard_path(out, 2), [5, 6, 7], tail='{"id": 8, "te')
    ddp_predict(tmp_path, out, ToyGenerator())

    rows = read_rows(out)
    assert [r["id"] for r in rows] == list(range(23))
    assert all(r["tag"] == "old" for r in rows if r["id"] in (5, 6, 7))
    new_rows = [r for r in rows if r["tag"] == "new"]
    assert len(new_rows) == 20
    assert {r["rank"] for r in new_rows} == {0, 1}  # each rank generated its own part
    assert find_shards(out) == []
    printed = " ".join(capfd.readouterr().out.split())
    assert printed.count("wrote 23 samples (20 new)") == 1  # rank 0 only


def test_ddp_crash_leaves_one_shard_per_rank_and_resumes(tmp_path):
    out = tmp_path / "samples.jsonl"
    with pytest.raises(Exception, match="simulated crash"):
        ddp_predict(tmp_path, out, ToyGenerator(crash_at_batch=2))
    shards = find_shards(out)
    assert shards == [shard_path(out, 0), shard_path(out, 1)]
    per_rank = [read_rows(s) for s in shards]
    for rank, rows in enumerate(per_rank):
        assert len(rows) == 6 and {r["rank"] for r in rows} == {rank}  # each rank wrote only its own shard
    done = {r["id"] for rows in per_rank for r in rows}
    assert len(done) == 12

    ddp_predict(tmp_path, out, ToyGenerator(tag="resumed"))
    rows = read_rows(out)
    assert [r["id"] for r in rows] == list(range(23))
    assert {r["id"] for r in rows if r["tag"] == "resumed"} == set(range(23)) - done
    assert find_shards(out) == []


LOOP = "Max is 11 feet tall. " + "She is 12 years old. She is 18 years old. " * 6
QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May? Her brother sold 12 more than she did "
            "in May and 3 fewer in April.")


def test_repetition_loops_are_told_from_long_texts():
    assert is_repetition_loop(LOOP) and is_repetition_loop("Jenna has $1" + "0" * 150)
    assert not is_repetition_loop(QUESTION) and not is_repetition_loop("no no no")  # too short to judge


@pytest.mark.parametrize("texts, advice", [
    ([QUESTION] * 3 + [LOOP], "raise --model.init_args.max_new_tokens"),  # 3 of 20 cut off mid-text
    ([LOOP] * 3 + [QUESTION], "would not end the loops: set --model.init_args.repetition_penalty"),  # 1 of 20
])
def test_the_cap_warning_names_the_fix_that_helps(tmp_path, caplog, texts, advice):
    rows = [{"id": i, "text": "short.", "hit_cap": False, "params": {"max_new_tokens": 64}} for i in range(16)]
    rows += [{"id": 16 + i, "text": t, "hit_cap": True, "params": {"max_new_tokens": 64}} for i, t in enumerate(texts)]
    out = tmp_path / "samples.jsonl"
    with caplog.at_level("INFO", logger="synthtune.callbacks.jsonl_writer"):
        JsonlPredictionWriter(str(out))._report_length_cap(out, rows)
    summary = json.loads((tmp_path / "samples.jsonl.summary.json").read_text())
    assert summary["hit_cap"] == 4 and summary["repetition_loops"] == texts.count(LOOP)
    assert advice in caplog.text and "4 (20.0 %) stopped at the cap" in caplog.text

"""Issue 15: nothing a user does by mistake destroys finished work, corrupts a dataset or ends in a
traceback. One test (or more) per numbered case of the issue, through the command line on the tiny
model; docs/reliability.md maps each guarantee to its test."""

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
import torch
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from cli_runner import run_synthtune as run_main
from test_cli import REPO, ROWS, base_args, data_file  # noqa: F401 - data_file is a fixture
from synthtune.callbacks import RunProgressBar
from synthtune.datamodules.fewshot import FewShotDataModule
from synthtune.datamodules.labeled import LabeledDataModule
from synthtune.errors import SynthtuneError
from synthtune.lightning_cli import run_cli
from synthtune.paths import atomic_write_bytes, atomic_write_jsonl, clean_stale_temp_files
from synthtune.records import read_jsonl, read_records, require_fields
from synthtune.tasks import load_task, read_labeled


def one_error_line(code, err, *parts):
    """The command failed with exit 2 and exactly one line ``error: ...`` that contains ``parts``."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def fit_run(tiny, data_file, root, capsys, *extra):
    code, err = run_main(["fit", *base_args(tiny, data_file, root, "--trainer.max_steps", "1", *extra)], capsys)
    assert code == 0, err
    return root / "checkpoints" / "last.ckpt"


def ids_of(path):
    return [json.loads(line)["id"] for line in Path(path).read_text().splitlines()]


# ------------------------------------------------------------------ 1. two writers of one output
def test_second_predict_into_the_same_file_is_refused_while_the_first_runs(tiny_llama, data_file, tmp_path,
                                                                          capsys):
    """Two real processes. The first holds the output's lock while it generates; the second (other
    temperature) stops with one line naming the first, and the file never mixes the two."""
    root = tmp_path / "run"
    ckpt = fit_run(tiny_llama, data_file, root, capsys)
    out = tmp_path / "samples.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    predict = [sys.executable, "-m", "synthtune.cli", "predict", "--config", str(root / "config.yaml"),
               "--ckpt_path", str(ckpt), "--writer.output_path", str(out), "--data.init_args.batch_size", "1"]
    # far more samples than it can write before it is stopped: it is still generating when the second starts
    first = subprocess.Popen([*predict, "--data.init_args.num_samples", "100000"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        shard = out.with_name("samples.jsonl.rank0.partial.jsonl")
        deadline = time.time() + 240
        while not (shard.is_file() and shard.stat().st_size) and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None and shard.is_file(), "the first run did not start generating"
        second = subprocess.run([*predict, "--data.init_args.num_samples", "8", "--model.init_args.temperature",
                                 "0.5"], env=env, capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first run ended before the second one was checked"
        # Lightning's own start-up lines ("Seed set to 0", ...) come first; then one line, and no traceback
        lines = second.stderr.strip().splitlines()
        one_error_line(second.returncode, lines[-1], f"{out} is being written by pid {first.pid} on ",
                       "wait for it to finish")
        assert sum(line.startswith("error:") for line in lines) == 1 and "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the kernel drops the lock, the shard stays
        first.wait(timeout=60)
    done = {json.loads(line)["id"] for line in shard.read_text().splitlines()[:-1]}
    assert done  # the first run's work survived its kill

    # the first command, run again, resumes (the lock of the killed process is gone)
    code, err = run_main(predict[3:] + ["--data.init_args.num_samples", "12"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["id"] for r in rows]
    assert ids == list(range(len(ids))) and len(ids) >= 12  # every id once, none lost
    configured = yaml.safe_load((root / "config.yaml").read_text())["model"]["init_args"]["sampling"]["temperature"]
    assert configured != 0.5 and {r["params"]["temperature"] for r in rows} == {configured}  # nothing from the refused run


# ------------------------------------------------------------------ 2. refused checkpoint, run folder intact
def test_fit_with_a_mismatched_checkpoint_leaves_the_run_folder_untouched(tiny_llama, data_file, tmp_path,
                                                                         capsys):
    root = tmp_path / "run"
    fit_run(tiny_llama, data_file, root, capsys)
    config = (root / "config.yaml").read_bytes()
    last = (root / "checkpoints" / "last.ckpt").read_bytes()

    # another config (another parameterization) resumed into the same run folder
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "2",
                                            "--model.init_args.parameterization", "np"), "--ckpt_path", "last"],
                         capsys)
    one_error_line(code, err, "checkpoint does not match this run: ", "parameterization='mc'")
    assert (root / "config.yaml").read_bytes() == config
    assert (root / "checkpoints" / "last.ckpt").read_bytes() == last

    # so the run's own config still predicts from its checkpoint
    code, err = run_main(["predict", "--config", str(root / "config.yaml"), "--ckpt_path", "last"], capsys)
    assert code == 0, err
    assert ids_of(root / "samples.jsonl") == list(range(6))


def test_checkpoint_of_another_method_is_refused_before_anything_is_written(tiny_llama, data_file, tmp_path,
                                                                           capsys):
    checkpoint = torch.load(fit_run(tiny_llama, data_file, tmp_path / "softsrv", capsys), weights_only=False)
    checkpoint["synthtune"] = {"method": "dawgen", "num_labels": 2}  # what a DawGen run signs its checkpoint with
    other = tmp_path / "dawgen.ckpt"
    torch.save(checkpoint, other)
    root = tmp_path / "run"
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "1"),
                          "--ckpt_path", str(other)], capsys)
    one_error_line(code, err, "checkpoint does not match this run: ", "method='dawgen' (this run: 'softsrv')",
                   "--config <run>/config.yaml")
    assert not (root / "config.yaml").exists()
    assert not list((root / "checkpoints").glob("*.ckpt"))


# ------------------------------------------------------------------ 3. overwrite with a mismatched checkpoint
def test_overwrite_with_a_mismatched_checkpoint_keeps_the_samples(tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    ckpt = fit_run(tiny_llama, data_file, root, capsys)
    code, err = run_main(["predict", "--config", str(root / "config.yaml"), "--ckpt_path", str(ckpt)], capsys)
    assert code == 0, err
    samples = (root / "samples.jsonl").read_bytes()

    code, err = run_main(["predict", *base_args(tiny_llama, data_file, root,
                                                "--model.init_args.parameterization", "np"),
                          "--ckpt_path", str(ckpt), "--writer.overwrite", "true"], capsys)
    one_error_line(code, err, "checkpoint does not match this run: ")
    assert (root / "samples.jsonl").read_bytes() == samples

    # a valid overwrite replaces the file (new temperature throughout), atomically at the end
    code, err = run_main(["predict", "--config", str(root / "config.yaml"), "--ckpt_path", str(ckpt),
                          "--writer.overwrite", "true", "--model.init_args.temperature", "0.5"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (root / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(6)) and {r["params"]["temperature"] for r in rows} == {0.5}


# ------------------------------------------------------------------ 4. invalid UTF-8
def test_data_file_with_invalid_utf8_skips_the_line_or_fails_under_strict(tiny_llama, tmp_path, capsys, caplog):
    data = tmp_path / "latin1.jsonl"
    lines = [json.dumps(r).encode() for r in ROWS[:8]]
    lines.insert(3, '{"question": "Caf\u00e9 au lait?"}'.encode("latin-1"))  # one byte 0xE9: not UTF-8
    data.write_bytes(b"\n".join(lines) + b"\n")
    rows = read_jsonl(data)
    assert len(rows) == 8 and "1 broken JSON line(s) at line 4" in caplog.text

    code, err = run_main(["fit", *base_args(tiny_llama, data, tmp_path / "run", "--trainer.max_steps", "1",
                                            "--data.init_args.strict", "true")], capsys)
    one_error_line(code, err, f"{data}: 1 broken JSON line(s) at line 4", "drop --strict")


def test_csv_with_invalid_utf8_is_one_line(tmp_path):
    data = tmp_path / "rows.csv"
    data.write_bytes(b"text\nfine\ncaf\xe9\n")
    with pytest.raises(SynthtuneError, match=r"rows.csv: line 3 is not valid UTF-8 .*re-save the file as UTF-8"):
        read_records(data)


# ------------------------------------------------------------------ 5. corrupt checkpoint
@pytest.mark.parametrize("subcommand", ["fit", "predict"])
def test_truncated_checkpoint_is_one_line(subcommand, tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    ckpt = fit_run(tiny_llama, data_file, root, capsys)
    config = (root / "config.yaml").read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # a crash or a full disk mid-copy
    code, err = run_main([subcommand, *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "2"),
                          "--ckpt_path", str(truncated)], capsys)
    one_error_line(code, err, f"{truncated} is not a readable checkpoint", "pass another .ckpt")
    assert "Traceback" not in err
    assert (root / "config.yaml").read_bytes() == config

    torch.save({"weights": torch.zeros(2)}, truncated)  # readable, but not a Lightning checkpoint
    code, err = run_main([subcommand, *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "2"),
                          "--ckpt_path", str(truncated)], capsys)
    one_error_line(code, err, f"{truncated} is not a Lightning checkpoint")


# ------------------------------------------------------------------ 6. output that cannot be written
def test_unwritable_output_is_refused_before_any_work(tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    ckpt = fit_run(tiny_llama, data_file, root, capsys)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")  # fails for root too, unlike chmod
    code, err = run_main(["predict", "--config", str(root / "config.yaml"), "--ckpt_path", str(ckpt),
                          "--writer.output_path", str(blocker / "samples.jsonl")], capsys)
    one_error_line(code, err, f"cannot write samples to {blocker}", "--writer.output_path")

    code, err = run_main(["fit", *base_args(tiny_llama, data_file, blocker / "run", "--trainer.max_steps", "1")],
                         capsys)
    one_error_line(code, err, f"cannot write the run (config, checkpoints, logs) to {blocker / 'run'}",
                   "--trainer.default_root_dir")


# ------------------------------------------------------------------ 7. typo'd option
def test_typo_in_yaml_or_on_the_command_line_is_one_line_with_a_suggestion(tiny_llama, data_file, tmp_path,
                                                                          capsys):
    args = base_args(tiny_llama, data_file, tmp_path / "run", "--trainer.max_steps", "1")
    code, err = run_main(["fit", *args, "--model.init_args.prompt_lenght", "4"], capsys)
    one_error_line(code, err, "error: model.init_args: unknown option 'prompt_lenght' (did you mean "
                              "'prompt_length'?)", "synthtune fit --help")

    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  init_args:\n    prompt_lenght: 4\n")
    code, err = run_main(["fit", *args, "--config", str(typo)], capsys)
    one_error_line(code, err, "model.init_args: unknown option 'prompt_lenght' (did you mean 'prompt_length'?)")

    typo.write_text("trainer:\n  max_stepz: 4\n")
    code, err = run_main(["fit", *args, "--config", str(typo)], capsys)
    one_error_line(code, err, "trainer: unknown option 'max_stepz' (did you mean 'max_steps'?)")

    code, err = run_main(["fit", *args, "--data.init_args.batch_size", "many"], capsys)
    one_error_line(code, err, "data.init_args: ", "batch_size", "many")

    code, err = run_main(["fitt", *args], capsys)
    one_error_line(code, err, "invalid choice: 'fitt'", "run `synthtune --help`")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ 8. text field that is not text
@pytest.mark.parametrize("value, shown", [(None, "null (NoneType)"), ([1, 2], "[1, 2] (list)")])
def test_text_field_that_is_null_or_not_a_value_is_one_line(value, shown, tiny_llama, tmp_path, capsys):
    """(A number is written as text since issue 32: tests/test_readers.py.)"""
    data = tmp_path / "train.jsonl"
    rows = ROWS[:5] + [{"question": value}] + ROWS[5:8]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, err = run_main(["fit", *base_args(tiny_llama, data, tmp_path / "run", "--trainer.max_steps", "1")],
                         capsys)
    one_error_line(code, err, f"{data}: row 5 field 'question' is {shown}, not text")


def test_require_fields_as_text_accepts_text_and_names_the_first_bad_row():
    require_fields([{"a": "x", "b": ""}], ["a", "b"], "rows", text=True)
    require_fields([{"a": "x", "b": 1.5}], ["a", "b"], "rows")  # labels and the like may be numbers
    with pytest.raises(SynthtuneError, match=r"rows: row 1 field 'b' is 1.5 \(float\), not text"):
        require_fields([{"a": "x", "b": "y"}, {"a": "x", "b": 1.5}], ["a", "b"], "rows", text=True)


def labeled_task(folder, lines):
    """A two-label task folder whose ``train.jsonl`` is ``lines`` (rows as dicts, or raw text)."""
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"label_names": ["neg", "pos"], "fields": ["text", "label"]}))
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (folder / "train.jsonl").write_text(text)
    return folder


LABELED = [{"text": f"review number {i}", "label": i % 2} for i in range(8)]


@pytest.mark.parametrize("value, shown", [(None, "null (NoneType)"), (12345, "12345 (int)")])
def test_labelled_text_field_that_is_null_or_a_number_is_one_line(value, shown, tiny_llama, tmp_path):
    """DawGen, prompt tuning and SynAlign rows (``tasks.read_labeled``) trained on "None" / "12345"."""
    folder = labeled_task(tmp_path / "task", LABELED[:3] + [{"text": value, "label": 1}] + LABELED[3:])
    message = f"{folder / 'train.jsonl'}: row 3 field 'text' is {shown}, not text"
    with pytest.raises(SynthtuneError, match=re.escape(message)):
        read_labeled(folder / "train.jsonl", load_task(str(folder)))
    with pytest.raises(SynthtuneError, match=re.escape(message)):
        LabeledDataModule(str(folder), backbone=tiny_llama, k=2, train_path=str(folder / "train.jsonl")).setup("fit")
    with pytest.raises(SynthtuneError, match=re.escape(message)):
        FewShotDataModule(str(folder), backbone=tiny_llama, k=1).setup("fit")


def test_labelled_datamodules_skip_broken_lines_by_default_and_fail_under_strict(tiny_llama, tmp_path, caplog):
    folder = labeled_task(tmp_path / "task", LABELED[:4] + ['{"text": "cut off', "[1, 2]"] + LABELED[4:])
    train = str(folder / "train.jsonl")
    message = f"{train}: 2 broken JSON line(s) at line 5, 6"
    with caplog.at_level("WARNING"):
        labeled = LabeledDataModule(str(folder), backbone=tiny_llama, k=4, train_path=train)
        labeled.setup("fit")
        fewshot = FewShotDataModule(str(folder), backbone=tiny_llama, k=2)
        fewshot.setup("fit")
    assert [r["text"] for r in labeled.rows] == [r["text"] for r in LABELED]
    assert sorted(r["text"] for r in fewshot.train_real + fewshot.dev_rows) == sorted(r["text"] for r in LABELED)
    assert sum(message in r.getMessage() for r in caplog.records) == 2
    with pytest.raises(SynthtuneError, match=re.escape(message + "; fix or remove them")):
        LabeledDataModule(str(folder), backbone=tiny_llama, k=4, train_path=train, strict=True).setup("fit")
    with pytest.raises(SynthtuneError, match=re.escape(message + "; fix or remove them")):
        FewShotDataModule(str(folder), backbone=tiny_llama, k=2, strict=True).setup("fit")


# ------------------------------------------------------------------ 9. strict data option
def test_broken_json_lines_are_skipped_by_default_and_an_error_under_strict(tiny_llama, tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:6]) + '{"question": "cut off\n'
                    + "".join(json.dumps(r) + "\n" for r in ROWS[6:8]))
    code, err = run_main(["fit", *base_args(tiny_llama, data, tmp_path / "run", "--trainer.max_steps", "1")],
                         capsys)
    assert code == 0, err
    code, err = run_main(["fit", *base_args(tiny_llama, data, tmp_path / "strict", "--trainer.max_steps", "1",
                                            "--data.init_args.strict", "true")], capsys)
    one_error_line(code, err, f"{data}: 1 broken JSON line(s) at line 7")


# ------------------------------------------------------------------ 10. atomic writer, temp files
def test_atomic_writer_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "shared.txt", b"x")
        os.umask(0o077)
        atomic_write_jsonl(tmp_path / "private.jsonl", [{"id": 0}])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.txt").stat().st_mode) == 0o644  # mkstemp gave 0600
    assert stat.S_IMODE((tmp_path / "private.jsonl").stat().st_mode) == 0o600


def test_temp_file_of_a_killed_merge_is_cleaned_up(tmp_path):
    out = tmp_path / "samples.jsonl"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".samples.jsonl.{int(dead.stdout)}.0badc0de.tmp"  # left by a process killed mid-merge
    stale.write_bytes(b"")
    live = tmp_path / f".samples.jsonl.{os.getpid()}.12345678.tmp"  # a writer that is still running
    live.write_bytes(b"")
    atomic_write_jsonl(out, [{"id": 0}])
    assert not stale.exists() and live.exists()
    assert ids_of(out) == [0]
    assert clean_stale_temp_files(out) == []


def test_a_real_kill_during_the_merge_leaves_a_temp_file_the_next_run_removes(tmp_path):
    """A process killed between creating the temp file and replacing the target."""
    out = tmp_path / "samples.jsonl"
    script = ("import os, sys, signal\n"
              "import synthtune.paths as p\n"
              "p.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
              f"p.atomic_write_jsonl({str(out)!r}, [{{'id': 1}}])\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert len(list(tmp_path.glob(".samples.jsonl.*.tmp"))) == 1 and not out.exists()
    atomic_write_jsonl(out, [{"id": 0}])
    assert list(tmp_path.glob(".samples.jsonl.*.tmp")) == []


def test_rich_progress_bar_named_in_a_config_gets_the_fixed_counts(tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    args = base_args(tiny_llama, data_file, root, "--trainer.max_steps", "1")
    args[args.index("--trainer.callbacks") + 1] = "[{class_path: lightning.pytorch.callbacks.RichProgressBar}]"
    args[args.index("--trainer.enable_progress_bar") + 1] = "true"
    code, err = run_main(["fit", *args], capsys)
    assert code == 0, err
    assert "class_path: synthtune.callbacks.RunProgressBar" in (root / "config.yaml").read_text()


def test_a_config_that_names_no_progress_bar_gets_the_fixed_one(tiny_llama, data_file, tmp_path, capsys):
    """Lightning's default bar (its unfixed RichProgressBar) showed "30/14" after a resume; synthtune's
    is the default instead."""
    args = base_args(tiny_llama, data_file, tmp_path / "run", "--trainer.max_steps", "2")
    args[args.index("--trainer.enable_progress_bar") + 1] = "true"
    cli = run_cli(["fit", *args])
    assert type(cli.trainer.progress_bar_callback) is RunProgressBar
    assert sum(isinstance(c, ProgressBar) for c in cli.trainer.callbacks) == 1
    assert "class_path: synthtune.callbacks.RunProgressBar" in (tmp_path / "run" / "config.yaml").read_text()
    # resumed, the bar counts the steps of the resumed epoch, not "30/14"
    cli = run_cli(["fit", *args[:-2], "--trainer.max_steps", "3", "--ckpt_path", "last"])
    assert type(cli.trainer.progress_bar_callback) is RunProgressBar and cli.trainer.global_step == 3
    # a bar the config names is kept, and a run without progress bars gets none
    named = ["--trainer.callbacks", "[{class_path: lightning.pytorch.callbacks.TQDMProgressBar}]"]
    cli = run_cli(["fit", *args, *named, "--trainer.default_root_dir", str(tmp_path / "tqdm")])
    assert type(cli.trainer.progress_bar_callback) is TQDMProgressBar
    off = ["--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "off")]
    cli = run_cli(["fit", *args, *off])
    assert cli.trainer.progress_bar_callback is None
    capsys.readouterr()


# ------------------------------------------------------------------ 11. config.yaml works from anywhere
def test_saved_config_works_from_another_working_directory(tiny_llama, tmp_path, capsys, monkeypatch):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    monkeypatch.chdir(project)
    args = base_args(tiny_llama, Path("data/train.jsonl"), Path("runs/x"), "--trainer.max_steps", "1")
    code, err = run_main(["fit", *args], capsys)
    assert code == 0, err
    run = project / "runs" / "x"
    saved = (run / "config.yaml").read_text()
    assert f"path: {project / 'data' / 'train.jsonl'}" in saved
    assert "default_root_dir: .\n" in saved and "split: train" in saved

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, err = run_main(["predict", "--config", str(run / "config.yaml"), "--ckpt_path", "last"], capsys)
    assert code == 0, err
    assert ids_of(run / "samples.jsonl") == list(range(6))
    assert list(elsewhere.iterdir()) == []


def test_a_moved_run_folder_predicts_into_its_new_place(tiny_llama, tmp_path, capsys, monkeypatch):
    """fit into a/, ``mv a b``, predict with b/config.yaml from a third folder: everything lands in b/."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    monkeypatch.chdir(tmp_path)
    args = base_args(tiny_llama, Path("data/train.jsonl"), Path("a"), "--trainer.max_steps", "1")
    code, err = run_main(["fit", *args], capsys)
    assert code == 0, err
    saved = (tmp_path / "a" / "config.yaml").read_text()
    assert "default_root_dir: .\n" in saved and f"path: {tmp_path / 'data' / 'train.jsonl'}" in saved
    assert str(tmp_path / "a") not in saved  # nothing in it points at the old place
    (tmp_path / "a").rename(tmp_path / "b")
    moved = tmp_path / "b"
    third = tmp_path / "third"
    third.mkdir()
    monkeypatch.chdir(third)
    code, err = run_main(["predict", "--config", str(moved / "config.yaml"),
                          "--ckpt_path", str(moved / "checkpoints" / "last.ckpt")], capsys)
    assert code == 0, err
    assert ids_of(moved / "samples.jsonl") == list(range(6))
    assert not (tmp_path / "a").exists() and list(third.iterdir()) == []

    # a relative --config from another folder, --ckpt_path last (the moved run's checkpoints), and a
    # fit that resumes it: all in b/
    monkeypatch.chdir(tmp_path)
    code, err = run_main(["predict", "--config", "b/config.yaml", "--ckpt_path", "last",
                          "--writer.overwrite", "true", "--data.init_args.num_samples", "3"], capsys)
    assert code == 0, err
    assert ids_of(moved / "samples.jsonl") == [0, 1, 2]
    code, err = run_main(["fit", "--config", "b/config.yaml", "--ckpt_path", "last", "--trainer.max_steps", "2"],
                         capsys)
    assert code == 0, err
    assert torch.load(moved / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "data", "third"]
    # a run folder given on the command line is relative to the working directory, as every path there is
    code, err = run_main(["fit", "--config", "b/config.yaml", "--trainer.default_root_dir", "c"], capsys)
    assert code == 0, err
    assert (tmp_path / "c" / "checkpoints" / "last.ckpt").is_file()
    assert "default_root_dir: .\n" in (tmp_path / "c" / "config.yaml").read_text()

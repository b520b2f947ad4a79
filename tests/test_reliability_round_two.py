"""Issue 34 (reliability, round two): checkpoints that survive a kill on any filesystem, SIGTERM, a
lock per run folder, and one line for the mistakes the hostile run found. One test (or more) per item,
through the command line on the tiny model; docs/reliability.md maps each guarantee to its test."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import faults
from cli_runner import run_synthtune as run_main
from test_cli import REPO, ROWS, base_args, data_file  # noqa: F401 - data_file is a fixture
from test_reliability import fit_run, ids_of, one_error_line

TESTS = Path(__file__).resolve().parent


def child_env(**extra):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]), OMP_NUM_THREADS="1", **extra)


def temp_files(folder):
    return sorted(p.name for p in Path(folder).glob(".*.tmp"))


# ------------------------------------------------------------------ 1. checkpoint saves are atomic
def test_a_kill_while_last_ckpt_is_written_keeps_the_previous_one(tiny_llama, data_file, tmp_path, capsys):
    """A real SIGKILL after the first 100 bytes of the new checkpoint reach the checkpoint folder, with
    $TMPDIR in another folder whose renames fail as across filesystems: Lightning's own save copied
    the checkpoint from $TMPDIR onto last.ckpt and left it cut off at 100 bytes."""
    root = tmp_path / "run"
    last = fit_run(tiny_llama, data_file, root, capsys)
    before = last.read_bytes()
    other_tmp = tmp_path / "tmpdir"
    other_tmp.mkdir()
    argv = ["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "2"), "--ckpt_path", "last"]
    script = ("import sys, faults\n"
              f"faults.install({str(last.parent)!r}, 'kill')\n"
              "from synthtune.cli import main\n"
              "main(sys.argv[1:])\n")
    done = subprocess.run([sys.executable, "-c", script, *argv], env=child_env(TMPDIR=str(other_tmp)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert last.read_bytes() == before  # still the step-1 checkpoint, whole
    assert torch.load(last, weights_only=False)["global_step"] == 1
    assert list(other_tmp.iterdir()) == []  # nothing orphaned in $TMPDIR
    assert len(temp_files(last.parent)) == 1  # the killed save's partial file, beside the target

    # resuming works, and its save deletes the killed one's temporary file
    code, err = run_main(argv, capsys)
    assert code == 0, err
    assert torch.load(last, weights_only=False)["global_step"] == 2
    assert temp_files(last.parent) == []


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_previous_one(
        tiny_llama, data_file, tmp_path, capsys, monkeypatch):
    root = tmp_path / "run"
    last = fit_run(tiny_llama, data_file, root, capsys)
    before = last.read_bytes()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # tempfile reads $TMPDIR again
    faults.install(last.parent, "enospc", monkeypatch)
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "2"),
                          "--ckpt_path", "last"], capsys)
    one_error_line(code, err, f"cannot write checkpoint {last} (No space left on device)",
                   "the previous checkpoint there is unchanged", "--ckpt_path last")
    assert last.read_bytes() == before
    assert temp_files(last.parent) == [] and not list(tmp_path.glob("tmp*"))


# ------------------------------------------------------------------ 3. SIGTERM
def wait_for(condition, process, what, seconds=240):
    deadline = time.time() + seconds
    while not condition() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert process.poll() is None and condition(), f"{what} did not happen: {process.stderr.read()[-2000:]}"


def background_fit(tiny_llama, data_file, root, steps, every_n: int) -> tuple[subprocess.Popen, list[str]]:
    """A long fit in a child process that writes its step count to ``steps``; returns it and its arguments."""
    marker = json.dumps([{"class_path": "faults.StepFile", "init_args": {"path": str(steps)}}])
    args = base_args(tiny_llama, data_file, root, "--trainer.max_steps", "100000",
                     "--checkpoint.every_n_train_steps", str(every_n))
    args[args.index("--trainer.callbacks") + 1] = marker
    process = subprocess.Popen([sys.executable, "-m", "synthtune.cli", "fit", *args], env=child_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, args


def test_sigterm_during_fit_saves_the_current_step_and_exits_non_zero(tiny_llama, data_file, tmp_path, capsys):
    root, steps = tmp_path / "run", tmp_path / "steps.txt"
    fit, args = background_fit(tiny_llama, data_file, root, steps, every_n=100000)
    try:
        wait_for(lambda: steps.is_file() and steps.read_text().isdigit() and int(steps.read_text()) >= 3, fit,
                 "three training steps")
        fit.send_signal(signal.SIGTERM)
        _, err = fit.communicate(timeout=120)
    finally:
        fit.kill()
    last = root / "checkpoints" / "last.ckpt"
    reached = int(steps.read_text())
    assert fit.returncode == 143, err[-2000:]  # 128 + SIGTERM: `fit && predict` does not go on
    lines = err.strip().splitlines()
    assert lines[-1] == (f"stopped by SIGTERM: {last} holds step {reached}; run the same command with "
                         "--ckpt_path last to resume"), err[-2000:]
    assert "Traceback" not in err
    assert torch.load(last, weights_only=False)["global_step"] == reached  # no periodic save ran before

    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", str(reached + 2)),
                          "--ckpt_path", "last"], capsys)
    assert code == 0, err
    assert torch.load(last, weights_only=False)["global_step"] == reached + 2


def test_sigterm_during_predict_stops_at_the_next_batch_and_resumes(tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    fit_run(tiny_llama, data_file, root, capsys)
    out = root / "samples.jsonl"
    shard = out.with_name("samples.jsonl.rank0.partial.jsonl")
    predict = ["predict", "--config", str(root / "config.yaml"), "--ckpt_path", "last",
               "--data.init_args.batch_size", "1"]
    run = subprocess.Popen([sys.executable, "-m", "synthtune.cli", *predict, "--data.init_args.num_samples",
                            "100000"], env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: shard.is_file() and shard.stat().st_size > 0, run, "a written batch")
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=120)  # was ignored until all 100000 samples were written
    finally:
        run.kill()
    assert run.returncode == 143, err[-2000:]
    rows = [json.loads(line) for line in shard.read_text().splitlines()]  # every line whole: stopped between batches
    done = [row["id"] for row in rows]
    assert done == list(range(len(done))) and 0 < len(done) < 100000
    assert err.strip().splitlines()[-1] == (f"stopped by SIGTERM: {len(done)} new samples are kept in {shard}; "
                                            "run the same command again to generate the rest"), err[-2000:]
    assert not out.exists()

    code, err = run_main([*predict, "--data.init_args.num_samples", str(len(done) + 3)], capsys)
    assert code == 0, err
    resumed = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in resumed] == list(range(len(done) + 3)) and resumed[:len(done)] == rows


def test_a_pipeline_stopped_by_sigterm_exits_non_zero(monkeypatch, capsys):
    """The pipeline runs its Lightning stages in-process: Lightning's SIGTERM stop reaches main, which
    exited 0 (SIGTERMException is a SystemExit without a status), and demo.sh went on to summarise."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    import synthtune.cli

    def stopped(name, argv):
        stop = SIGTERMException()
        stop.synthtune_kept = "runs/x/fit/checkpoints/last.ckpt holds step 7"
        raise stop

    monkeypatch.setattr(synthtune.cli, "run_command", stopped)
    code, err = run_main(["pipeline", "--config", "pipelines/gsm8k_softsrv.yaml"], capsys)
    assert code == 143
    assert err.strip() == ("stopped by SIGTERM: runs/x/fit/checkpoints/last.ckpt holds step 7; "
                           "run the same command again to resume")


# ------------------------------------------------------------------ 5. one fit per run folder
def test_a_second_fit_into_a_run_folder_being_written_is_refused_at_once(tiny_llama, data_file, tmp_path, capsys):
    root, steps = tmp_path / "run", tmp_path / "steps.txt"
    first, args = background_fit(tiny_llama, data_file, root, steps, every_n=2)
    try:
        wait_for(lambda: (root / "checkpoints" / "last.ckpt").is_file(), first, "a first checkpoint")
        for extra in ([], ["--ckpt_path", "last"]):  # a fresh fit, or a resume, while the first one runs
            code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "3",
                                                    "--model.init_args.prompt_length", "2"), *extra], capsys)
            one_error_line(code, err, f"{root} is being written by pid {first.pid} on ",
                           f"(lock {root / '.fit.lock'})", "another --trainer.default_root_dir")
            assert first.poll() is None
    finally:
        first.kill()  # SIGKILL: the kernel drops its lock
        first.wait(timeout=60)
    assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]  # the first run's
    assert "prompt_length: 4" in (root / "config.yaml").read_text()  # not the refused run's 2
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "100000"),
                          "--ckpt_path", "last", "--trainer.max_steps", str(int(steps.read_text()) + 1)], capsys)
    assert code == 0, err  # the killed run's lock does not block its resume


def test_a_fresh_fit_into_a_finished_run_folder_is_refused(tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    last = fit_run(tiny_llama, data_file, root, capsys)
    before, config = last.read_bytes(), (root / "config.yaml").read_bytes()
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "2")], capsys)
    one_error_line(code, err, f"{root} already holds a fit ({last})", "pass --ckpt_path last to resume it",
                   "another --trainer.default_root_dir")
    assert last.read_bytes() == before and (root / "config.yaml").read_bytes() == config
    # a checkpoint of another run would replace it too; one of this folder resumes
    other = fit_run(tiny_llama, data_file, tmp_path / "other", capsys)
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "2"),
                          "--ckpt_path", str(other)], capsys)
    one_error_line(code, err, f"{root} already holds a fit")
    assert last.read_bytes() == before
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "2"),
                          "--ckpt_path", str(last)], capsys)
    assert code == 0, err
    assert torch.load(last, weights_only=False)["global_step"] == 2


# ------------------------------------------------------------------ 6. --ckpt_path last with no checkpoint
@pytest.mark.parametrize("subcommand", ["predict", "validate"])
def test_ckpt_path_last_without_a_checkpoint_is_one_line_not_an_untrained_run(subcommand, tiny_llama, data_file,
                                                                              tmp_path, capsys):
    root = tmp_path / "run"
    code, err = run_main([subcommand, *base_args(tiny_llama, data_file, root), "--ckpt_path", "last"], capsys)
    one_error_line(code, err, f"--ckpt_path last: there is no checkpoint {root / 'checkpoints' / 'last.ckpt'}",
                   "run `synthtune fit` into that run folder first")
    assert not (root / "samples.jsonl").exists() and not list(root.glob("*.partial.jsonl"))


# ------------------------------------------------------------------ 4. predict resumes only its own files
def test_predict_refuses_a_file_it_did_not_write_and_leaves_it_untouched(tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    fit_run(tiny_llama, data_file, root, capsys)
    foreign = tmp_path / "mine.jsonl"
    foreign.write_text("".join(json.dumps({"id": i, "text": f"my row {i}"}) + "\n" for i in range(60)))
    before = foreign.read_bytes()
    predict = ["predict", "--config", str(root / "config.yaml"), "--ckpt_path", "last",
               "--writer.output_path", str(foreign), "--data.init_args.num_samples", "64"]
    code, err = run_main(predict, capsys)
    one_error_line(code, err, f"{foreign} was not written by `synthtune predict` (row id 0 has no 'params')",
                   "--writer.overwrite true", "another --writer.output_path")
    assert foreign.read_bytes() == before
    assert not list(tmp_path.glob("mine.jsonl.rank*"))

    code, err = run_main([*predict, "--writer.overwrite", "true", "--data.init_args.num_samples", "4"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in foreign.read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2, 3] and all("params" in r for r in rows)


# ------------------------------------------------------------------ 8. an output path that is a directory
def test_an_existing_directory_as_output_is_refused_before_generating(tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    fit_run(tiny_llama, data_file, root, capsys)
    folder = tmp_path / "out"
    folder.mkdir()
    code, err = run_main(["predict", "--config", str(root / "config.yaml"), "--ckpt_path", "last",
                          "--writer.output_path", str(folder)], capsys)
    one_error_line(code, err, f"--writer.output_path {folder} is a directory",
                   f"--writer.output_path {folder / 'samples.jsonl'}")
    assert list(folder.iterdir()) == [] and not list(tmp_path.glob("out.*"))  # no shard named after the folder


# ------------------------------------------------------------------ 10. a UTF-8 byte order mark
def test_a_utf8_byte_order_mark_keeps_the_first_jsonl_row(tmp_path, caplog):
    from synthtune.records import read_jsonl

    data = tmp_path / "notepad.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in ROWS[:3]).encode())
    with caplog.at_level("WARNING"):
        rows = read_jsonl(data, strict=True)
    assert rows == ROWS[:3] and "broken" not in caplog.text

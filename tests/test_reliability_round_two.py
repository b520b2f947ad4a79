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

"""Issue 34 (reliability, round two), the items left after round two: relative paths that work from anywhere,
a pipeline that never deletes a folder it cannot parse, output mistakes caught before any work, and one line
(exit 2) for every OS error and bad input of items 9 and 10. Faults are real where they can be: a full disk is
a small tmpfs when one can be mounted (else a file size limit, ``ulimit -f``, in a child process), a read-only
folder is ``chmod``, Ctrl-C is a real SIGINT. docs/reliability.md maps each guarantee to its test."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from cli_runner import run_synthtune as run_main
from test_cli import REPO, ROWS, base_args, data_file  # noqa: F401 - data_file is a fixture
from test_reliability import fit_run, one_error_line

TESTS = Path(__file__).resolve().parent


def child_env(**extra):
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]), OMP_NUM_THREADS="1", **extra)


# ------------------------------------------------------------------ 2. relative backbone and data paths
@pytest.mark.parametrize("backbone", ["./tiny", "tiny"])
def test_a_run_trained_on_relative_paths_predicts_and_resumes_from_anywhere(backbone, tiny_llama, tmp_path, capsys,
                                                                          monkeypatch):
    """``fit --model.init_args.backbone ./tiny`` recorded './tiny' in the checkpoint and '<abs>/tiny' in
    config.yaml, so predicting with that config (and resuming) was refused as "does not match"; a bare
    ``tiny`` stayed relative in config.yaml and failed from another folder."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    shutil.copytree(tiny_llama, work / "tiny")
    elsewhere.mkdir()
    (work / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    monkeypatch.chdir(work)
    fit = ["fit", *base_args(backbone, "data.jsonl", "runs/rel", "--trainer.max_steps", "1")]
    code, err = run_main(fit, capsys)
    assert code == 0, err
    saved = yaml.safe_load((work / "runs/rel/config.yaml").read_text())
    assert saved["model"]["init_args"]["backbone"] == str(work / "tiny")
    assert saved["data"]["init_args"]["path"] == str(work / "data.jsonl")
    last = work / "runs/rel/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=False)["synthtune"]["backbone"] == str(work / "tiny")

    # the same relative command resumes
    code, err = run_main([*fit, "--ckpt_path", "last", "--trainer.max_steps", "2"], capsys)
    assert code == 0, err
    assert torch.load(last, weights_only=False)["global_step"] == 2

    monkeypatch.chdir(elsewhere)  # the saved config, from another folder: predict, and fit --ckpt_path last
    config = str(Path("..") / "work/runs/rel/config.yaml")
    code, err = run_main(["predict", "--config", config, "--ckpt_path", "last"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (work / "runs/rel/samples.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and rows[0]["params"]["backbone"] == str(work / "tiny")
    code, err = run_main(["fit", "--config", config, "--ckpt_path", "last", "--trainer.max_steps", "3"], capsys)
    assert code == 0, err
    assert torch.load(last, weights_only=False)["global_step"] == 3
    assert not (elsewhere / "runs").exists()  # nothing written relative to the other folder


def test_local_path_is_one_form_for_every_spelling(tmp_path):
    from synthtune.paths import local_path

    (tmp_path / "tiny").mkdir()
    (tmp_path / "train").mkdir()
    (tmp_path / "d.jsonl").write_text("{}\n")
    key = "model.init_args.backbone"
    assert local_path(key, "tiny", tmp_path) == local_path(key, "./tiny", tmp_path) == str(tmp_path / "tiny")
    assert local_path(key, str(tmp_path / "x/../tiny"), tmp_path) == str(tmp_path / "tiny")
    assert local_path(key, "smollm2-135m", tmp_path) == "smollm2-135m"  # an alias, never a folder
    assert local_path(key, "org/not-here", tmp_path) == "org/not-here"  # a hub id
    assert local_path("data.init_args.split", "train", tmp_path) == "train"  # a split beside a folder "train"
    assert local_path("data.init_args.path", "d.jsonl", tmp_path) == str(tmp_path / "d.jsonl")
    assert local_path("data.init_args.path", "missing.jsonl", tmp_path) == "missing.jsonl"  # its own error later

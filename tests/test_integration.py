"""End to end on the real bundled SmolLM2-135M (offline): fit a few steps, predict, resume."""

import json
from pathlib import Path

import pytest
import torch

from cli_runner import run_synthtune as run

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]




def args(root, *extra):
    return ["--config", str(REPO / "configs/softsrv/demo.yaml"), "--data.init_args.limit", "16",
            "--data.init_args.batch_size", "2", "--data.init_args.max_length", "40",
            "--data.init_args.num_samples", "2", "--model.init_args.prompt_length", "4",
            "--model.init_args.max_new_tokens", "12", "--trainer.default_root_dir", str(root),
            "--trainer.callbacks", "[]", "--trainer.enable_progress_bar", "false", *extra]


def test_bundled_model_fit_predict_resume(tmp_path, capsys):
    root = tmp_path / "run"
    code, err = run(["fit", *args(root, "--trainer.max_steps", "2", "--checkpoint.every_n_train_steps", "1")],
                    capsys)
    assert code == 0, err
    ckpt = root / "checkpoints" / "last.ckpt"
    assert ckpt.stat().st_size < 20_000_000  # the 135M-parameter backbone (540 MB) is not in it
    state = torch.load(ckpt, weights_only=False)
    assert state["synthtune"]["backbone"] == "smollm2-135m" and state["global_step"] == 2

    code, err = run(["fit", *args(root, "--trainer.max_steps", "3"), "--ckpt_path", "last"], capsys)
    assert code == 0, err
    assert torch.load(ckpt, weights_only=False)["global_step"] == 3

    code, err = run(["predict", "--config", str(root / "config.yaml"), "--ckpt_path", str(ckpt)], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (root / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1]
    assert all(r["text"].strip() for r in rows)  # real words from the real model
    assert rows[0]["params"]["backbone"] == "smollm2-135m"

"""The command line as a user meets it: fit, predict, resume, and one-line errors for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_runner import run_synthtune as run_main

REPO = Path(__file__).resolve().parents[1]
ROWS = [{"question": f"Sam has {i} pens and gives away {i // 2}. How many are left?"} for i in range(16)]


@pytest.fixture()
def data_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def base_args(tiny, data_file, root, *extra):
    return ["--config", str(REPO / "configs/softsrv/demo.yaml"), "--model.init_args.backbone", tiny,
            "--model.init_args.prompt_length", "4", "--model.init_args.max_new_tokens", "5",
            "--data.init_args.path", str(data_file), "--data.init_args.limit", "null",
            "--data.init_args.batch_size", "4", "--data.init_args.num_samples", "6",
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks", "[]", "--trainer.logger", "false", *extra]




def test_fit_predict_and_resume_through_the_cli(tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "3")], capsys)
    assert code == 0, err
    assert (root / "config.yaml").is_file() and (root / "checkpoints" / "last.ckpt").is_file()

    # --ckpt_path last continues from step 3 up to the new max_steps
    code, err = run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "5"),
                          "--ckpt_path", "last"], capsys)
    assert code == 0, err
    import torch

    assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 5

    code, err = run_main(["predict", "--config", str(root / "config.yaml"),
                          "--ckpt_path", str(root / "checkpoints" / "last.ckpt")], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (root / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(6))
    assert all(isinstance(r["text"], str) and r["method"] == "softsrv" for r in rows)


@pytest.mark.parametrize("override, message", [
    (["--data.init_args.path", "/nonexistent/data.jsonl"], "data file not found: /nonexistent/data.jsonl"),
    (["--data.init_args.text_template", "{title}"], "lacks field(s) title"),
    (["--model.init_args.prompt_length", "0"], "prompt_length must be a positive"),
    (["--model.init_args.backbone", "nobody/unknown-model"], "unknown backbone 'nobody/unknown-model'"),
    (["--ckpt_path", "/nonexistent/last.ckpt"], "checkpoint not found: /nonexistent/last.ckpt"),
])
def test_bad_input_is_one_line_without_traceback(override, message, tiny_llama, data_file, tmp_path, capsys):
    args = base_args(tiny_llama, data_file, tmp_path / "run", "--trainer.max_steps", "1")
    if override[0] == "--model.init_args.backbone":  # the link also sets the data's backbone
        args = [a if a != tiny_llama else override[1] for a in args]
        override = []
    code, err = run_main(["fit", *args, *override], capsys)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err


def test_empty_data_is_one_line(tiny_llama, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, err = run_main(["fit", *base_args(tiny_llama, empty, tmp_path / "run")], capsys)
    assert code == 2 and "no examples left after filtering" in err and "Traceback" not in err


def test_mismatched_checkpoint_is_one_line(tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    assert run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "1",
                                       "--model.init_args.parameterization", "np")], capsys)[0] == 0
    code, err = run_main(["predict", *base_args(tiny_llama, data_file, tmp_path / "other"),
                          "--ckpt_path", str(root / "checkpoints" / "last.ckpt")], capsys)
    assert code == 2 and "checkpoint does not match this run: " in err and "parameterization='np'" in err
    assert "Traceback" not in err


def test_user_callback_by_class_path(tiny_llama, data_file, tmp_path, capsys):
    """The README's example: a user's own callback added in YAML by class_path."""
    (tmp_path / "my_callbacks.py").write_text(
        "from lightning.pytorch.callbacks import Callback\n"
        "class CountSteps(Callback):\n"
        "    def __init__(self, path: str):\n"
        "        self.path, self.n = path, 0\n"
        "    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):\n"
        "        self.n += 1\n"
        "        open(self.path, 'w').write(str(self.n))\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"trainer:\n  callbacks:\n    - class_path: my_callbacks.CountSteps\n"
                     f"      init_args:\n        path: {tmp_path / 'count.txt'}\n")
    sys.path.insert(0, str(tmp_path))
    try:
        args = [a for a in base_args(tiny_llama, data_file, tmp_path / "run", "--trainer.max_steps", "2")]
        i = args.index("--trainer.callbacks")
        del args[i:i + 2]
        code, err = run_main(["fit", *args, "--config", str(extra)], capsys)
    finally:
        sys.path.remove(str(tmp_path))
    assert code == 0, err
    assert (tmp_path / "count.txt").read_text() == "2"


def test_ddp_predict_on_two_cpu_processes_writes_each_id_once(tiny_llama, data_file, tmp_path, capsys):
    root = tmp_path / "run"
    assert run_main(["fit", *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "1")], capsys)[0] == 0
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "synthtune.cli", "predict", "--config", str(root / "config.yaml"),
           "--ckpt_path", str(root / "checkpoints" / "last.ckpt"), "--data.init_args.num_samples", "11",
           "--data.init_args.batch_size", "2", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", "ddp", "--writer.output_path", str(tmp_path / "ddp.jsonl")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ids = [json.loads(line)["id"] for line in (tmp_path / "ddp.jsonl").read_text().splitlines()]
    assert ids == list(range(11))
    assert not list(tmp_path.glob("ddp.jsonl.rank*"))


def test_ddp_fit_on_two_cpu_processes_then_resume_on_one(tiny_llama, data_file, tmp_path):
    """The same config trains under DDP with no code change, and its checkpoint resumes on one process."""
    root = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "synthtune.cli", "fit",
           *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "2"),
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    import torch

    state = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 2 and not any(k.startswith("backbone.") for k in state["state_dict"])
    resume = [sys.executable, "-m", "synthtune.cli", "fit",
              *base_args(tiny_llama, data_file, root, "--trainer.max_steps", "3"), "--ckpt_path", "last"]
    done = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3

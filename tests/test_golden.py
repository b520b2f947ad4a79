"""Golden outputs: a short tiny-model fit + predict/test per method through the CLI.

Written before the restructure (issue 9) so that moving code cannot change behaviour unnoticed: the
same seed must give the same loss trajectory and the same sample texts. When a change is *meant* to
alter outputs (e.g. a fidelity fix), regenerate with ``SYNTHTUNE_UPDATE_GOLDEN=1 pytest
tests/test_golden.py`` and say why in the commit.

The stored numbers must hold on any x86 CPU, whose kernels sum floats in other orders. So the runs use
update rules that keep a rounding difference small: plain SGD wherever a step could amplify one (Adam
divides a near-zero gradient by its own scale, and DawGen's bi-level step turned a 1e-7 change into a
full-size update on another CPU). ``scripts/golden_kernels.py`` reruns these tests under other kernels
(``ATEN_CPU_CAPABILITY``, ``MKL_ENABLE_INSTRUCTIONS``, 1 and 2 threads) and records the largest deviation in
``tests/golden/kernels.json``; the tolerances below are set from it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml

from cli_runner import run_synthtune

GOLDEN = Path(__file__).parent / "golden" / "outputs.json"
REPO = Path(__file__).resolve().parents[1]
UPDATE = os.environ.get("SYNTHTUNE_UPDATE_GOLDEN") == "1"
DUMP = os.environ.get("SYNTHTUNE_GOLDEN_DUMP")  # a folder: write what each test got there (golden_kernels.py)
# Losses agree to REL_TOL across kernels and thread counts: the largest relative deviation measured over seven
# settings is 1.6e-7, the 6-decimal rounding of the stored losses (tests/golden/kernels.json), so 1e-5 leaves
# 60x for CPUs the script could not select; a behaviour change moves these losses by 1e-3 and more (the old
# Adam-stepped DawGen run moved by 1.5e-3 between an Intel and an AMD CPU).
REL_TOL, ABS_TOL = 1e-5, 1e-6


def _config(tmp_path: Path, name: str, model: dict, data: dict, max_steps: int) -> Path:
    cfg = {
        "seed_everything": 0,
        "model": model,
        "data": data,
        "trainer": {
            "default_root_dir": str(tmp_path / name), "accelerator": "cpu", "devices": 1, "max_steps": max_steps,
            "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
            "callbacks": [{"class_path": "helpers.LossLog", "init_args": {"path": str(tmp_path / f"{name}.json")}}],
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check(name: str, got: dict) -> None:
    if DUMP:
        Path(DUMP).mkdir(parents=True, exist_ok=True)
        (Path(DUMP) / f"{name}.json").write_text(json.dumps(got))
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if UPDATE:
        golden[name] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    want = golden[name]
    assert len(got["losses"]) == len(want["losses"])
    for a, b in zip(got["losses"], want["losses"]):
        assert math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL), (got["losses"], want["losses"])
    for key in want:
        if key != "losses":
            assert got[key] == want[key], key


def _fit_then(capsys, tmp_path, name, cfg, then: list[str]) -> None:
    code, err = run_synthtune(["fit", "--config", str(cfg)], capsys)
    assert code == 0, err
    run = tmp_path / name
    code, err = run_synthtune([*then[:1], "--config", str(run / "config.yaml"),
                               "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), *then[1:]], capsys)
    assert code == 0, err


def test_softsrv_golden(tiny_llama, tmp_path, capsys):
    rows = [{"question": f"Tom has {i} apples and buys {i + 2} more. How many now?"} for i in range(24)]
    data_file = tmp_path / "train.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _config(tmp_path, "softsrv", {
        "class_path": "synthtune.lightning_modules.SoftSRVModule",
        "init_args": {"backbone": tiny_llama, "parameterization": "mc", "prompt_length": 4, "mlp_hidden": 8,
                      "lr": 0.01, "max_new_tokens": 8, "seed": 3},
    }, {
        "class_path": "synthtune.datamodules.TextDataModule",
        "init_args": {"path": str(data_file), "text_template": "{question}", "batch_size": 4, "num_samples": 6},
    }, max_steps=5)
    _fit_then(capsys, tmp_path, "softsrv", cfg, ["predict"])
    samples = _rows(tmp_path / "softsrv" / "samples.jsonl")
    _check("softsrv", {"losses": json.loads((tmp_path / "softsrv.json").read_text()),
                       "texts": [r["text"] for r in samples], "contexts": [r["context_index"] for r in samples]})


def test_dawgen_golden(tiny_llama, tmp_path, capsys):
    cfg = _config(tmp_path, "dawgen", {
        "class_path": "synthtune.lightning_modules.DawGenModule",
        "init_args": {"backbone": tiny_llama, "prompt_length": 3, "lam": 0.5, "weight_mlp_size": 8, "lr": 0.5,
                      "optimizer": "sgd", "weight_lr": 0.5, "weight_optimizer": "sgd", "max_new_tokens": 6,
                      "meta_every_n_steps": 1},
    }, {
        "class_path": "synthtune.datamodules.LabeledDataModule",
        "init_args": {"task": "sst2", "batch_size": 4, "max_length": 10, "max_context_length": 8, "num_per_label": 3},
    }, max_steps=4)
    _fit_then(capsys, tmp_path, "dawgen", cfg, ["predict"])
    samples = _rows(tmp_path / "dawgen" / "samples.jsonl")
    _check("dawgen", {"losses": json.loads((tmp_path / "dawgen.json").read_text()),
                      "texts": [r["text"] for r in samples], "labels": [r["label"] for r in samples]})


def test_prompt_tuning_golden(tiny_llama, tmp_path, capsys):
    syn = tmp_path / "syn.jsonl"
    syn.write_text("".join(json.dumps({"text": f"a {'good' if i % 2 else 'bad'} film number {i}", "label": i % 2})
                           + "\n" for i in range(16)))
    cfg = _config(tmp_path, "pt", {
        "class_path": "synthtune.lightning_modules.PromptTuningModule",
        "init_args": {"backbone": tiny_llama, "template": "{text} It was", "label_words": [" terrible", " great"],
                      "multi_token_labels": True, "prompt_length": 3, "lr": 0.05, "gradient_surgery": True},
    }, {
        "class_path": "synthtune.datamodules.FewShotDataModule",
        "init_args": {"task": "sst2", "seed": 13, "strategy": "paired", "synthetic": str(syn), "batch_size": 4,
                      "test_limit": 16},
    }, max_steps=4)
    metrics = tmp_path / "pt-test.json"
    callbacks = json.dumps([{"class_path": "helpers.MetricsLog", "init_args": {"path": str(metrics)}}])
    _fit_then(capsys, tmp_path, "pt", cfg, ["test", "--trainer.callbacks", callbacks])
    _check("prompt_tuning", {"losses": json.loads((tmp_path / "pt.json").read_text()),
                             "test": json.loads(metrics.read_text())})

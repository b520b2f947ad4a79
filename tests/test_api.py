"""synthtune.api: the Lightning runs from Python, parsed by the CLI's own parser from a config plus dotted keys."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

import synthtune.api as st
from helpers import REPO, one_thread  # noqa: F401 - autouse fixture
from synthtune.errors import SynthtuneError
from synthtune.lightning_cli import compose as cli_compose

QUESTIONS = [f"Tom has {i} apples and buys {i + 2} more apples. How many apples now?" for i in range(16)]


def softsrv_config(tmp_path: Path, tiny: str) -> dict:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    return {"seed_everything": 0,
            "model": {"class_path": "synthtune.lightning_modules.SoftSRVModule",
                      "init_args": {"backbone": tiny, "parameterization": "mc", "prompt_length": 4, "mlp_hidden": 8,
                                    "lr": 0.01}},
            "data": {"class_path": "synthtune.datamodules.TextDataModule",
                     "init_args": {"path": str(data), "text_template": "{question}", "batch_size": 4, "num_samples": 4}},
            "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 2, "enable_model_summary": False}}


def test_compose_applies_a_task_files_base_and_dotted_keys_as_the_command_line_does():
    by_words = cli_compose(["fit", "--config", str(REPO / "configs/dawgen/rte.yaml"), "--model.init_args.lam", "0.5",
                            "--trainer.max_steps", "7"])
    by_keys = st.compose("fit", REPO / "configs/dawgen/rte.yaml", {"model.init_args.lam": 0.5}, **{"trainer.max_steps": 7})
    assert by_keys == by_words
    assert by_keys["model"]["init_args"]["lam"] == 0.5 and by_keys["data"]["init_args"]["task"] == "rte"


def test_a_misspelt_key_or_a_missing_config_is_one_line():
    with pytest.raises(SynthtuneError, match=r"unknown option 'lamda'") as error:
        st.compose("fit", REPO / "configs/dawgen/rte.yaml", {"model.init_args.lamda": 0.5})
    assert "\n" not in str(error.value)
    with pytest.raises(SynthtuneError, match="config file not found: nowhere.yaml"):
        st.fit("nowhere.yaml")


def test_fit_resume_and_generate_from_python(tiny_llama, tmp_path, capsys):
    config = softsrv_config(tmp_path, tiny_llama)
    root = tmp_path / "run"
    run = st.fit(config, {"trainer.default_root_dir": str(root)})
    assert run.folder == root and run.config.is_file() and run.checkpoint == root / "checkpoints" / "last.ckpt"
    assert run.checkpoint.is_file() and "train/loss" in run.metrics
    saved = yaml.safe_load(run.config.read_text())
    assert saved["trainer"]["max_steps"] == 2
    out = capsys.readouterr()
    # the CLI's progress lines and its hidden warnings, not Lightning's bare bar ("Epoch 0/-2")
    assert "fit: finished at step 2" in out.out + out.err and "/-2" not in out.out + out.err
    assert any("eval mode at the start of training" in str(f[1].pattern) for f in warnings.filters if f[1])

    # a second fit into the folder is refused, as on the command line; ckpt_path="last" resumes it
    with pytest.raises(SynthtuneError, match="already holds a fit"):
        st.fit(config, {"trainer.default_root_dir": str(root)})
    resumed = st.fit(config, {"trainer.default_root_dir": str(root), "trainer.max_steps": 3}, ckpt_path="last")
    assert "resumed at step 2" in capsys.readouterr().out

    samples = st.generate(resumed, 5, temperature=0.9, max_new_tokens=6)
    assert len(samples) == 5 and sorted(samples["id"]) == list(range(5))
    assert all(isinstance(text, str) for text in samples["text"])
    assert {row["params"]["temperature"] for row in samples} == {0.9}
    assert (root / "samples.jsonl").is_file()
    # generating more resumes into the same file: the first five rows are kept as they were
    more = st.generate(root, 7, temperature=0.9, max_new_tokens=6)
    assert len(more) == 7 and more.select(range(5))["text"] == samples["text"]
    with pytest.raises(SynthtuneError, match="sampling settings|params|another"):
        st.generate(root, 8, temperature=0.5, max_new_tokens=6)  # other settings into the same file: refused

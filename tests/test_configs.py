"""Every YAML in configs/ parses, a task file is its base plus exactly its own keys, and every config runs
one fast_dev_run step on a tiny model."""

import json
from functools import reduce
from pathlib import Path

import pytest
import yaml

from helpers import base_of, composed_config, subcommand_of
from synthtune.cli import run_cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml"))
TASK_CONFIGS = [c for c in CONFIGS if "config" in yaml.safe_load((REPO / c).read_text())]


def test_there_are_configs():
    assert "configs/softsrv/demo.yaml" in CONFIGS and "configs/softsrv/gsm8k.yaml" in CONFIGS
    assert "configs/dawgen/rte.yaml" in TASK_CONFIGS
    assert base_of("configs/dawgen/rte.yaml") == REPO / "configs/dawgen/base.yaml"


@pytest.mark.parametrize("config", CONFIGS)
def test_config_parses_with_the_cli(config):
    assert composed_config(config)["model"]["class_path"].startswith("synthtune.")


@pytest.mark.parametrize("config", TASK_CONFIGS)
def test_task_config_is_its_base_with_its_own_keys_set(config):
    # A task file is `config: base.yaml` plus dotted keys (data.init_args.task: rte). Composed, it must be
    # the base with exactly those keys replaced: a key written as a nested mapping would instead replace
    # the base's whole section, and jsonargparse reads a nested `config:` that way.
    task = yaml.safe_load((REPO / config).read_text())
    task.pop("config")
    assert task and all("." in key for key in task), f"{config}: set only dotted keys after `config:`"
    expected = composed_config(base_of(config))
    for key, value in task.items():
        *parents, leaf = key.split(".")
        section = reduce(lambda node, name: node[name], parents, expected)
        assert leaf in section, f"{config}: {key} is not an option of the base"
        section[leaf] = value
    assert composed_config(config) == expected


@pytest.mark.parametrize("config", CONFIGS)
def test_fast_dev_run_on_a_tiny_model(config, tiny_llama, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    subcommand = subcommand_of(config)
    args = [subcommand, "--config", config, "--model.init_args.backbone", tiny_llama,
            "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.default_root_dir", str(tmp_path)]
    data = composed_config(config)["data"]["init_args"]
    if "limit" in data and data["limit"] is None:  # one step needs a few rows, not the whole file's context embeddings
        args += ["--data.init_args.limit", "64"]
    for key in ("path", "synthetic", "real"):
        if data.get(key) and not (REPO / data[key]).exists():
            # The config reads an earlier step's output (e.g. generated rows): give it a small stand-in.
            stand_in = tmp_path / f"{key}.jsonl"
            stand_in.write_text("".join(json.dumps({"text": f"Tom has {i} pens. How many now?", "label": i % 2})
                                        + "\n" for i in range(8)))
            args += [f"--data.init_args.{key}", str(stand_in)]
    cli = run_cli(args)
    if subcommand == "fit":
        assert cli.trainer.global_step == 1
    else:
        assert cli.trainer.state.finished

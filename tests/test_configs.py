"""Every YAML in configs/ parses, and every config runs one fast_dev_run step on a tiny model."""

import json
from pathlib import Path

import pytest
import yaml

from synthtune.cli import run_cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml"))


def subcommand_of(config: str) -> str:
    return yaml.safe_load((REPO / config).read_text()).get("synthtune_subcommand") or "fit"


def test_there_are_configs():
    assert "configs/softsrv/demo.yaml" in CONFIGS and "configs/softsrv/gsm8k.yaml" in CONFIGS


@pytest.mark.parametrize("config", CONFIGS)
def test_config_parses_with_the_cli(config, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_info:
        run_cli([subcommand_of(config), "--config", config, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("synthtune.")


@pytest.mark.parametrize("config", CONFIGS)
def test_fast_dev_run_on_a_tiny_model(config, tiny_llama, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    subcommand = subcommand_of(config)
    args = [subcommand, "--config", config, "--model.init_args.backbone", tiny_llama,
            "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.default_root_dir", str(tmp_path)]
    data = yaml.safe_load((REPO / config).read_text()).get("data", {}).get("init_args", {})
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

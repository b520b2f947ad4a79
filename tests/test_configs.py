"""Every YAML in configs/ parses, and every config runs one fast_dev_run step on a tiny model."""

from pathlib import Path

import pytest
import yaml

from synthtune.cli import run_cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml"))


def test_there_are_configs():
    assert "configs/softsrv/demo.yaml" in CONFIGS and "configs/softsrv/gsm8k.yaml" in CONFIGS


@pytest.mark.parametrize("config", CONFIGS)
def test_config_parses_with_the_cli(config, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    subcommand = yaml.safe_load((REPO / config).read_text()).get("synthtune_subcommand", "fit")
    with pytest.raises(SystemExit) as exit_info:
        run_cli([subcommand, "--config", config, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("synthtune.")


@pytest.mark.parametrize("config", CONFIGS)
def test_fast_dev_run_on_a_tiny_model(config, tiny_llama, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    cli = run_cli(["fit", "--config", config, "--model.init_args.backbone", tiny_llama,
                   "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
                   "--trainer.default_root_dir", str(tmp_path)])
    assert cli.trainer.global_step == 1

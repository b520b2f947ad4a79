"""The option bundles (``backbone``, ``sampling``) and the flat options of earlier releases, still accepted for
one release: each flat option moves into its bundle with one warning line that names the new key."""

import logging

import pytest
import torch

import helpers
from synthtune.components.backbone_spec import BackboneSpec
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.errors import SynthtuneError
from synthtune.lightning_cli import run_cli
from synthtune.lightning_modules import FineTuningModule, PromptTuningModule, SFTModule, SoftSRVModule
from synthtune.lightning_modules.base import FLAT_OPTIONS


def deprecation_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "is deprecated" in r.getMessage()]


def test_flat_options_move_into_their_bundles_with_one_line_each(tiny_llama, caplog):
    with caplog.at_level(logging.WARNING):
        module = SoftSRVModule(backbone=tiny_llama, parameterization="np", prompt_length=4, temperature=0.3,
                               max_new_tokens=7, gradient_checkpointing=True)
    assert module.sampling == SamplingSettings(temperature=0.3, max_new_tokens=7)
    assert module.backbone_spec == BackboneSpec(tiny_llama, gradient_checkpointing=True)
    assert module.backbone.model.layers[0].gradient_checkpointing
    lines = deprecation_lines(caplog)
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert any("--model.init_args.sampling.temperature" in line for line in lines)
    assert any("--model.init_args.backbone.gradient_checkpointing" in line for line in lines)
    # the checkpoint's hyper-parameters hold the bundles, not the flat keys
    assert not set(FLAT_OPTIONS) & set(module.hparams)
    assert module.hparams.sampling["temperature"] == 0.3 and module.hparams.backbone["gradient_checkpointing"]


def test_nested_options_warn_nothing(tiny_llama, caplog):
    with caplog.at_level(logging.WARNING):
        module = SoftSRVModule(backbone=BackboneSpec(tiny_llama), parameterization="np", prompt_length=4,
                               sampling=SamplingSettings(temperature=0.3))
    assert module.sampling.temperature == 0.3 and deprecation_lines(caplog) == []


def test_the_command_line_takes_both_forms(tiny_llama, tmp_path, caplog, monkeypatch):
    monkeypatch.chdir(helpers.REPO)
    common = ["fit", "--config", "configs/softsrv/demo.yaml", "--model.init_args.prompt_length", "4",
              "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu", "--data.init_args.limit", "16"]
    nested = run_cli(common + ["--trainer.default_root_dir", str(tmp_path / "nested"), "--model.init_args.backbone.name", tiny_llama, "--model.init_args.backbone.dtype",
                               "bf16", "--model.init_args.sampling.temperature", "0.3"])
    assert nested.model.backbone_spec == BackboneSpec(tiny_llama, dtype="bf16")
    assert nested.model.backbone.get_input_embeddings().weight.dtype == torch.bfloat16
    assert nested.datamodule.backbone == tiny_llama  # the data's tokenizer follows the spec's name
    assert nested.model.sampling.temperature == 0.3 and deprecation_lines(caplog) == []
    with caplog.at_level(logging.WARNING):
        flat = run_cli(common + ["--trainer.default_root_dir", str(tmp_path / "flat"), "--model.init_args.backbone", tiny_llama, "--model.init_args.temperature", "0.4"])
    assert flat.model.sampling.temperature == 0.4
    assert deprecation_lines(caplog) and "sampling.temperature" in deprecation_lines(caplog)[0]


def test_a_method_that_does_not_sample_takes_no_sampling_option(tiny_llama):
    with pytest.raises(TypeError, match="temperature"):
        PromptTuningModule(backbone=tiny_llama, template="{text} It was", label_words=[" bad", " good"],
                           prompt_length=2, temperature=0.5)


def test_a_method_keeps_its_own_option_of_a_flat_name(tiny_llama):
    module = SFTModule(backbone=tiny_llama, finetune="full", max_new_tokens=9)
    assert module.hparams.max_new_tokens == 9  # SFT's greedy test cap, not a sampling option


@pytest.mark.parametrize("option", ["compile", "gradient_checkpointing"])
def test_methods_that_train_their_own_copy_refuse_the_speed_options_in_one_line(tiny_llama, option):
    with pytest.raises(SynthtuneError, match=f"does not support backbone.{option}; drop "
                                             f"--model.init_args.backbone.{option}"):
        FineTuningModule(backbone=BackboneSpec(tiny_llama, **{option: True}), mode="head")


def test_bundles_given_as_plain_mappings_are_read(tiny_llama):
    # what a config read without the command-line parser (or a checkpoint's hyper-parameters) passes
    module = SoftSRVModule(backbone={"name": tiny_llama, "dtype": "bf16"}, sampling={"temperature": 0.2},
                           parameterization="np", prompt_length=2)
    assert module.backbone_spec == BackboneSpec(tiny_llama, dtype="bf16")
    assert module.sampling == SamplingSettings(temperature=0.2)
    with pytest.raises(SynthtuneError, match="sampling must be a mapping"):
        SoftSRVModule(backbone=tiny_llama, sampling=0.2, parameterization="np", prompt_length=2)


def test_a_dumped_config_shows_the_flat_options_only_when_given(capsys):
    """--print_config and a run's config.yaml (the same parser dump) leave the unset deprecated keys out."""
    from synthtune.lightning_cli import compose

    composed = compose(["fit", "--config", str(helpers.REPO / "configs/softsrv/demo.yaml")])
    model = composed["model"]["init_args"]
    assert not set(FLAT_OPTIONS) & set(model) and model["sampling"]["temperature"] == 0.7
    given = compose(["fit", "--config", str(helpers.REPO / "configs/softsrv/demo.yaml"),
                     "--model.init_args.temperature", "0.5"])["model"]["init_args"]
    assert given["temperature"] == 0.5 and "dtype" not in given
    with pytest.raises(SystemExit):
        run_cli(["fit", "--config", str(helpers.REPO / "configs/softsrv/demo.yaml"), "--print_config"])
    printed = capsys.readouterr().out
    assert "    sampling:\n" in printed and "\n    temperature:" not in printed and "\n    dtype:" not in printed

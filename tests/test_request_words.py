"""Command-line words in a Python request (the deprecated list form of pipeline ``overrides``, ``synthtune sweep``'s
words after ``--``) compose as on the command line, also on a config that gives the backbone as a spec mapping
(``backbone: {name: ..., dtype: ...}``) and the sampling settings as a mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cli_runner import run_synthtune_output
from synthtune.errors import SynthtuneError
from synthtune.lightning_cli import Request, compose

#: Words touching the model (a plain option, a sampling field, a field of the backbone spec), the data and the
#: trainer, and the dotted keys that say the same.
WORDS = ("--model.init_args.lr", "0.05", "--model.init_args.sampling.top_p", "0.8",
         "--model.init_args.backbone.dtype", "bf16", "--data.init_args.batch_size", "2", "--trainer.max_steps", "5")
KEYS = {"model.init_args.lr": 0.05, "model.init_args.sampling.top_p": 0.8, "model.init_args.backbone.dtype": "bf16",
        "data.init_args.batch_size": 2, "trainer.max_steps": 5}


def rows(path: Path) -> Path:
    path.write_text("".join(json.dumps({"question": f"How many apples are {i} and {i + 1}?"}) + "\n" for i in range(4)))
    return path


@pytest.fixture
def config(tmp_path, tiny_llama) -> Path:
    """A SoftSRV config with the backbone as a spec mapping and a sampling mapping."""
    path = tmp_path / "softsrv.yaml"
    path.write_text(yaml.safe_dump({
        "seed_everything": 0,
        "model": {"class_path": "synthtune.lightning_modules.SoftSRVModule",
                  "init_args": {"backbone": {"name": tiny_llama, "dtype": "fp32"}, "prompt_length": 4, "lr": 0.01,
                                "sampling": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 16}}},
        "data": {"class_path": "synthtune.datamodules.TextDataModule",
                 "init_args": {"path": str(rows(tmp_path / "train.jsonl")), "text_template": "{question}",
                               "batch_size": 4}},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 2, "default_root_dir": str(tmp_path / "run")}}))
    return path


def print_config(argv: list[str], capsys) -> dict:
    code, out, err = run_synthtune_output([*argv, "--print_config"], capsys)
    assert code == 0, err
    return yaml.safe_load(out)


def test_words_on_a_backbone_spec_compose_as_dotted_keys_and_as_the_command_line(config, tiny_llama, capsys):
    by_words = compose(Request("fit", (config,), arguments=WORDS))
    by_keys = compose(Request("fit", (config,), KEYS))
    assert by_words == by_keys == print_config(["fit", "--config", str(config), *WORDS], capsys)
    model = by_words["model"]["init_args"]
    assert model["backbone"] == {"name": tiny_llama, "dtype": "bf16", "compile": False, "gradient_checkpointing": False}
    assert model["sampling"] == {"temperature": 0.7, "top_p": 0.8, "max_new_tokens": 16, "repetition_penalty": 1.0}
    assert model["lr"] == 0.05 and model["prompt_length"] == 4
    assert by_words["data"]["init_args"]["batch_size"] == 2
    assert by_words["trainer"]["max_steps"] == 5


def test_a_mapping_after_the_file_and_the_dotted_keys_apply_in_order_around_the_words(config, tmp_path, capsys):
    other = rows(tmp_path / "other.jsonl")
    by_words = compose(Request("fit", (config, {"data.init_args.path": str(other), "model.init_args.lr": 0.5}),
                               {"trainer.max_steps": 9}, arguments=WORDS))
    by_cli = print_config(["fit", "--config", str(config), "--data.init_args.path", str(other), *WORDS,
                           "--trainer.max_steps", "9"], capsys)
    assert by_words == by_cli
    assert by_words["data"]["init_args"]["path"] == str(other)
    assert by_words["model"]["init_args"]["lr"] == 0.05  # the words come after the mapping
    assert by_words["trainer"]["max_steps"] == 9  # the dotted keys after the words


def test_a_template_word_is_taken_verbatim_with_the_class_from_the_config(config):
    template = "Q ({question}): {question}"
    composed = compose(Request("fit", (config,), arguments=("--data.init_args.text_template", template)))
    assert composed["data"]["init_args"]["text_template"] == template


def test_a_mapping_value_no_config_file_can_hold_is_one_line(config, tmp_path):
    with pytest.raises(SynthtuneError, match=r"a config mapping holds PosixPath\('.*other.jsonl'\), which a config "
                                             r"file cannot; give it as text") as error:
        compose(Request("fit", (config, {"data.init_args.path": tmp_path / "other.jsonl"}), arguments=WORDS))
    assert "\n" not in str(error.value)

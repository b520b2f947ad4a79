"""Every template option takes the user's text verbatim on the command line, as a YAML config would give it."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from synthtune import datamodules, lightning_modules
from synthtune.cli import main, run_cli
from synthtune.templates import class_paths, template_options, verbatim_templates

REPO = Path(__file__).resolve().parents[1]
# ": " (a YAML mapping), "{" (a flow mapping and a format field), "#" (a YAML comment), a leading "- " (a YAML
# list) and a newline. Decoded as YAML it would be [{"Review": {"review_body": None}}, {"Answer": None}].
TRICKY = "- Review: {review_body} # {stars} stars\n- Answer:"

# (config, section, option): one config that uses each template option.
CASES = [
    ("configs/softsrv/demo.yaml", "data", "text_template"),
    ("configs/sft/demo.yaml", "data", "prompt_template"),
    ("configs/prompt_tuning/demo.yaml", "model", "template"),
    ("configs/template_generation/demo.yaml", "model", "question_template"),
    ("configs/template_generation/demo.yaml", "model", "critique_template"),
    ("configs/template_generation/demo.yaml", "model", "refine_template"),
    ("configs/template_generation/demo.yaml", "model", "answer_template"),
    ("configs/synalign/demo_generate.yaml", "model", "attribute_template"),
    ("configs/synalign/demo_generate.yaml", "model", "generation_template"),
]


def printed_config(argv: list[str], capsys) -> dict:
    """``synthtune <argv> --print_config``, run in-process as from a shell, parsed."""
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--print_config"])
    captured = capsys.readouterr()
    assert exit_info.value.code in (0, None), captured.err
    return yaml.safe_load(captured.out)


def test_every_template_option_has_a_case():
    found = {option for package in (lightning_modules, datamodules) for name in package.__all__
             for option in template_options(getattr(package, name))}
    assert {option for _, _, option in CASES} == found


@pytest.mark.parametrize("config, section, option", CASES, ids=[option for _, _, option in CASES])
def test_template_on_the_command_line_is_taken_verbatim(config, section, option, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    subcommand = "predict" if "generat" in config else "fit"
    printed = printed_config([subcommand, "--config", config, f"--{section}.init_args.{option}", TRICKY], capsys)
    assert printed[section]["init_args"][option] == TRICKY


def test_short_option_and_equals_form_also_verbatim_and_later_options_still_win(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    printed = printed_config(["fit", "--config", "configs/softsrv/demo.yaml", f"--data.text_template={TRICKY}",
                              "--data.init_args.limit", "7"], capsys)
    assert printed["data"]["init_args"]["text_template"] == TRICKY
    assert printed["data"]["init_args"]["limit"] == 7
    assert printed["data"]["init_args"]["path"] == "data/gsm8k/train.jsonl"  # the config's other values stay


def test_the_datamodule_receives_the_template_and_renders_the_users_columns(tiny_llama, tmp_path, monkeypatch):
    # The case: a user's CSV of reviews and an instruction-style template with ": ".
    monkeypatch.chdir(REPO)
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("stars,review_body\n" + "".join(f"{1 + i % 5},Review text number {i}\n" for i in range(8)))
    template = "Review ({stars} stars): {review_body}"
    cli = run_cli(["fit", "--config", "configs/softsrv/demo.yaml", "--model.init_args.backbone", tiny_llama,
                   "--data.init_args.path", str(reviews), "--data.init_args.text_template", template,
                   "--trainer.fast_dev_run", "true", "--trainer.default_root_dir", str(tmp_path / "run")])
    assert cli.datamodule.text_template == template
    assert cli.datamodule.load_texts()[0] == "Review (1 stars): Review text number 0"


PROMPT_TUNING = ["--model", "synthtune.lightning_modules.PromptTuningModule"]
QA = ["--data.class_path", "synthtune.datamodules.QADataModule"]


def test_verbatim_templates_rewrites_only_template_options_and_keeps_the_order():
    argv = ["fit", *PROMPT_TUNING, *QA, "--model.init_args.template", "a: b", "--data.init_args.limit", "3",
            "--data.prompt_template=Q: {question}", "--trainer.max_steps", "2"]
    assert verbatim_templates(argv) == [
        "fit", *PROMPT_TUNING, *QA, "--model", '{"init_args": {"template": "a: b"}}',
        "--data.init_args.limit", "3", "--data", '{"init_args": {"prompt_template": "Q: {question}"}}',
        "--trainer.max_steps", "2"]
    text = ["--data=synthtune.datamodules.TextDataModule"]
    # A value that looks like an option is still the template's value; a missing value is left to argparse.
    assert verbatim_templates([*text, "--data.text_template", "-x"]) == [
        *text, "--data", '{"init_args": {"text_template": "-x"}}']
    assert verbatim_templates([*text, "--data.text_template"]) == [*text, "--data.text_template"]
    # Names that are not template options of the selected class, or not under model/data, are untouched.
    assert verbatim_templates([*PROMPT_TUNING, "--trainer.template", "a: b", "--model.init_args.lr", "0.1",
                               "--data.init_args.prompt_template", "a: b"]) == [
        *PROMPT_TUNING, "--trainer.template", "a: b", "--model.init_args.lr", "0.1",
        "--data.init_args.prompt_template", "a: b"]
    # An option of another class than the one selected is not a template option here.
    assert verbatim_templates([*text, "--data.prompt_template", "a: b"]) == [*text, "--data.prompt_template", "a: b"]


USER_MODULE = """
import lightning.pytorch as pl
from synthtune.templates import Template


class ReviewModule(pl.LightningModule):
    def __init__(self, review_template: Template = "{text}", lr: float = 0.1):
        super().__init__()
        self.review_template = review_template
"""


def test_a_users_own_class_given_by_class_path_gets_its_template_options_verbatim(tmp_path, monkeypatch):
    (tmp_path / "user_reviews.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_reviews", raising=False)
    (tmp_path / "base.yaml").write_text("model:\n  class_path: user_reviews.ReviewModule\n")
    (tmp_path / "task.yaml").write_text("config: base.yaml\nmodel.init_args.lr: 0.2\n")
    # Found through a config file that reads another one, as jsonargparse reads them (relative to the file).
    assert class_paths(["fit", "--config", str(tmp_path / "task.yaml")]) == {"model": "user_reviews.ReviewModule"}
    argv = ["fit", "--config", "task.yaml", "--model.init_args.review_template", TRICKY, "--model.init_args.lr", "1"]
    assert verbatim_templates(argv, cwd=tmp_path) == [
        "fit", "--config", "task.yaml", "--model", json.dumps({"init_args": {"review_template": TRICKY}}),
        "--model.init_args.lr", "1"]
    # Given directly, and by its bare name once imported (as the parser resolves one).
    for selected in (["--model.class_path", "user_reviews.ReviewModule"], ["--model", "ReviewModule"]):
        assert verbatim_templates([*selected, "--model.review_template", "a: b"]) == [
            *selected, "--model", '{"init_args": {"review_template": "a: b"}}']

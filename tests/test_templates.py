"""Every template option takes the user's text verbatim on the command line, as a YAML config would give it."""

from pathlib import Path

import pytest
import yaml

from synthtune.cli import main, run_cli
from synthtune.templates import template_options, verbatim_templates

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
    assert {option for _, _, option in CASES} == template_options()


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


def test_verbatim_templates_rewrites_only_template_options_and_keeps_the_order():
    argv = ["fit", "--config", "c.yaml", "--model.init_args.template", "a: b", "--data.init_args.limit", "3",
            "--data.prompt_template=Q: {question}", "--trainer.max_steps", "2"]
    assert verbatim_templates(argv) == [
        "fit", "--config", "c.yaml", "--model", '{"init_args": {"template": "a: b"}}',
        "--data.init_args.limit", "3", "--data", '{"init_args": {"prompt_template": "Q: {question}"}}',
        "--trainer.max_steps", "2"]
    # A value that looks like an option is still the template's value; a missing value is left to argparse.
    assert verbatim_templates(["--data.text_template", "-x"]) == ["--data", '{"init_args": {"text_template": "-x"}}']
    assert verbatim_templates(["--data.text_template"]) == ["--data.text_template"]
    # Names that are not template options, or not under model/data, are untouched.
    assert verbatim_templates(["--trainer.template", "a: b", "--model.init_args.lr", "0.1"]) == [
        "--trainer.template", "a: b", "--model.init_args.lr", "0.1"]

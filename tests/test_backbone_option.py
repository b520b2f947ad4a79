"""One field of the backbone spec from the command line: with its name it sets the spec; on a backbone given by
name only (as the shipped configs give it) it is one line that says to give the name too."""

from pathlib import Path

import yaml

from cli_runner import run_synthtune, run_synthtune_output

REPO = Path(__file__).resolve().parents[1]


def test_a_dtype_with_the_name_sets_the_spec(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code, out, err = run_synthtune_output(["fit", "--config", "configs/softsrv/demo.yaml",
                                           "--model.init_args.backbone.name", "smollm2-135m",
                                           "--model.init_args.backbone.dtype", "bf16", "--print_config"], capsys)
    assert code == 0, err
    backbone = yaml.safe_load(out)["model"]["init_args"]["backbone"]
    assert backbone["name"] == "smollm2-135m" and backbone["dtype"] == "bf16"


def test_a_dtype_on_a_backbone_given_by_name_is_one_line_naming_the_fix(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    code, err = run_synthtune(["fit", "--config", "configs/softsrv/demo.yaml", "--model.init_args.backbone.dtype", "bf16", "--trainer.fast_dev_run", "true",
                               "--trainer.default_root_dir", str(tmp_path / "run")], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err
    assert lines[-1].startswith("error: model.init_args.backbone: a field of the backbone spec was set on a backbone "
                                "given by name only; give its name too (--model.init_args.backbone.name ")
    assert not (tmp_path / "run").exists()

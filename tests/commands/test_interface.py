"""Every data command is a typed function behind jsonargparse: ``--config`` and ``--print_config`` work
as for ``fit``, bare bool flags work, and ``synthtune --help`` lists every command."""

import json

import pytest
import yaml

from cli_runner import run_synthtune as run
from cli_runner import run_synthtune_output as run_out
from synthtune.commands import COMMANDS, command_lines, run_command
from synthtune.lightning_cli import LIGHTNING_COMMANDS

ALL = [[name] if not isinstance(target, dict) else [name, sub]
       for name, target in COMMANDS.items() for sub in (target if isinstance(target, dict) else [None])]


def test_help_lists_every_command(capsys):
    code, out, _ = run_out(["--help"], capsys)
    assert code == 0
    for name in [*LIGHTNING_COMMANDS, *(" ".join(words) for words in ALL)]:
        assert f"  {name} " in out, name
    assert {name for name, _ in command_lines()} == {"curate", "decontaminate", "export-prompt", "filter", "pipeline",
                                                     "score mauve", "score novelty", "synalign select", "synalign evaluate", "sweep"}


# `pipeline` reads no file of its own (its stages do): its round trip is in tests/pipeline/test_pipeline.py.
@pytest.mark.parametrize("words", [w for w in ALL if w != ["pipeline"]], ids=" ".join)
def test_every_command_prints_its_config_and_reads_it_back(words, tmp_path, capsys):
    code, printed, err = run_out([*words, "--print_config"], capsys)
    assert code == 0, err
    config = yaml.safe_load(printed)
    assert "config" not in config and len(config) >= 5
    # The printed config, completed and saved, drives the command through --config: the parse must
    # reach the command's own checks (a one-line error about the file), not fail on the options.
    for key in ("input", "output", "synthetic", "reference", "real", "pool", "run", "train"):
        if key in config and not isinstance(config[key], list):
            config[key] = str(tmp_path / f"missing-{key}.jsonl")
    given = {"task": "sst2", "budget": 4, "tasks": ["sst2"], "task_config": str(tmp_path / "missing-{task}.yaml")}
    config.update({key: value for key, value in given.items() if key in config})
    path = tmp_path / "command.yaml"
    path.write_text(yaml.safe_dump(config))
    code, err = run([*words, "--config", str(path)], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "missing-" in err or "not found" in err


def test_config_file_values_are_used_and_flags_override_them(tmp_path, capsys):
    rows = [{"text": f"row number {i} about {'cats' if i % 2 else 'dogs'}"} for i in range(12)]
    source = tmp_path / "gen.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "curate.yaml"
    config.write_text(yaml.safe_dump({"input": str(source), "output": str(tmp_path / "a.jsonl"), "num_samples": 5,
                                      "clusters": 3, "svd_components": 4}))
    report = run_command("curate", ["--config", str(config)])
    assert report["output"] == 5 and report["clusters_requested"] == 3
    report = run_command("curate", ["--config", str(config), "--num_samples", "7", "--strict"])
    assert report["output"] == 7 and len((tmp_path / "a.jsonl").read_text().splitlines()) == 7


def test_arguments_after_double_dash_go_to_commands_that_take_them(tmp_path, capsys):
    code, err = run(["curate", "--input", "x.jsonl", "--output", str(tmp_path / "o.jsonl"), "--", "--more"], capsys)
    assert code == 2 and err.strip() == "error: `synthtune curate` takes no arguments after --; remove `-- --more`"

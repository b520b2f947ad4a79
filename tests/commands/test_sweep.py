import json
from pathlib import Path

import pytest

from cli_runner import run_synthtune as run
from recorded_predictions import record_test_predictions, scores
from synthtune.commands import run_command
from synthtune.commands.sweep import grid_rows, markdown_table, mean_std


def sweep_main(argv):
    return run_command("sweep", argv)

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "prompt_tuning" / "{task}.yaml")


def test_grid_rows_split_paired_by_gradient_surgery_only():
    assert grid_rows(["paired", "real", "real+syn"], ["on", "off"], ["zero_shot"]) == [
        "zero_shot", "real", "real+syn", "paired/off", "paired/on"]
    assert grid_rows(["paired"], ["on"], []) == ["paired/on"]
    # the synthetic-only row (no real data) sits right after real-only, as in the paper's ablation
    assert grid_rows(["paired", "syn", "real"], ["on"], []) == ["real", "syn", "paired/on"]


def test_table_cells_are_mean_and_sample_std_in_percent():
    assert mean_std([0.5]) == (0.5, 0.0)
    m, s = mean_std([0.5, 0.6])
    assert m == pytest.approx(0.55) and s == pytest.approx(0.0707107, rel=1e-5)
    results = [{"task": "sst2", "row": "real", "acc": a} for a in (0.5, 0.6)]
    results += [{"task": "rte", "row": "real", "acc": 0.7}]
    table = markdown_table(results, ["sst2", "rte"], ["real", "paired/on"])
    lines = table.strip().splitlines()
    assert lines[0] == "| Method | sst2 | rte | Avg. |"
    assert lines[2] == "| Prompt tuning, real only | 55.0 ± 7.1 | 70.0 ± 0.0 | 62.5 |"
    assert lines[3] == "| paired + GS | – | – | – |"
    partial = markdown_table(results, ["sst2", "rte"], ["real"], expected=2).strip().splitlines()[2]
    assert partial == "| Prompt tuning, real only | 55.0 ± 7.1 | 70.0 ± 0.0 (n=1) | 62.5 |"


def test_sweep_runs_the_grid_writes_the_table_and_resumes(tiny_llama, tmp_path, capsys, monkeypatch):
    runs = record_test_predictions(monkeypatch)
    syn = tmp_path / "syn.jsonl"
    syn.write_text("".join(json.dumps({"text": f"film {i}", "label": i % 2}) + "\n" for i in range(8)))
    root = tmp_path / "sweep"
    argv = ["--tasks", "[sst2]", "--task_config", CONFIG, "--strategies", "[real, paired]", "--seeds", "[13]",
            "--synthetic", f"[sst2={syn}]", "--reference", "[zero_shot]", "--root", str(root), "--",
            "--model.init_args.backbone", tiny_llama, "--model.init_args.prompt_length", "2",
            "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--checkpoint.monitor", "null",
            "--data.init_args.test_limit", "8", "--trainer.enable_progress_bar", "false",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    table = sweep_main(argv)
    records = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in records) == sorted(
        f"sst2|{row}|13" for row in ("zero_shot", "real", "paired/on", "paired/off"))
    for r in records:  # each recorded score is the one of that run's own test predictions
        predictions, labels = runs[str(root / "sst2" / r["row"].replace("/", "-gs-") / "seed13")]
        assert len(predictions) == 8
        assert {"acc": r["acc"], "f1": r["f1"]} == pytest.approx(scores(predictions, labels)), r["key"]
    assert (root / "sst2" / "paired-gs-off" / "seed13" / "checkpoints" / "last.ckpt").is_file()
    assert table == (root / "table.md").read_text()
    for name in ("Zero-shot prompting", "Prompt tuning, real only", "paired, no GS", "paired + GS"):
        assert f"| {name} | " in table
    assert "±" in table
    # A second run finds every result and trains nothing.
    (root / "sst2" / "real").rename(root / "moved")
    sweep_main(argv)
    assert len((root / "results.jsonl").read_text().splitlines()) == len(records)
    assert not (root / "sst2" / "real").exists()
    # --table_only writes the table of what exists, for any subset of rows, and runs nothing.
    out = tmp_path / "only.md"
    sweep_main(["--tasks", "[sst2]", "--strategies", "[real, real+syn]", "--root", str(root), "--out", str(out),
                "--table_only"])
    assert "| Prompt tuning, real only | " in out.read_text() and "| real+syn | – | – |" in out.read_text()


@pytest.mark.parametrize("extra,needle", [
    (["--strategies", "[mix]"], "unknown combination strategy 'mix'"),
    (["--strategies", "[paired]"], "need synthetic data"),
    (["--gs", "[maybe]"], "--gs takes on and/or off"),
    (["--synthetic", "[sst2]"], "TASK=PATH"),
    (["--task_config", "nowhere/{task}.yaml"], "config for task sst2 not found: nowhere/sst2.yaml"),
])
def test_bad_sweep_arguments_are_one_line(tmp_path, capsys, extra, needle):
    code, err = run(["sweep", "--tasks", "[sst2]", "--task_config", CONFIG, "--root", str(tmp_path), *extra], capsys)
    err = err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err

import json
from pathlib import Path

import pytest

from cli_runner import run_synthtune as run
from recorded_predictions import record_test_predictions, scores
from synthtune.commands import run_command
from synthtune.commands.sweep import grid_rows, markdown_table, mean_std, row_name, split_row


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


def test_variant_and_fine_tuning_rows_come_after_the_strategies():
    assert grid_rows(["paired", "real"], ["on"], ["zero_shot"], ["paired/on@uniform"], ["ft_head", "ft_prompt"]) == [
        "zero_shot", "real", "paired/on", "paired/on@uniform", "ft_prompt", "ft_head"]
    assert row_name("paired/on@uniform") == "paired + GS (uniform synthetic data)"
    assert split_row("paired/on@uniform") == ("paired", "on", "uniform") and split_row("real+syn") == ("real+syn", "", "")


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
    by_row = {r["row"]: r for r in records}
    fitted = json.loads((root / "sst2" / "paired-gs-on" / "seed13" / "fit.json").read_text())
    assert by_row["paired/on"]["conflict_rate"] == fitted["train/conflict_rate"]
    assert "conflict_rate" not in by_row["real"] and "conflict_rate" not in by_row["zero_shot"]
    assert table == (root / "table.md").read_text()
    assert (root / "table.png").read_bytes()[:4] == b"\x89PNG"
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


def test_sweep_runs_fine_tuning_and_variant_rows(tiny_llama, tmp_path, monkeypatch):
    runs = record_test_predictions(monkeypatch)
    syn, uniform = tmp_path / "syn.jsonl", tmp_path / "uniform.jsonl"
    syn.write_text("".join(json.dumps({"text": f"film {i}", "label": i % 2}) + "\n" for i in range(8)))
    uniform.write_text("".join(json.dumps({"text": f"movie {i}", "label": i % 2}) + "\n" for i in range(8)))
    root = tmp_path / "sweep"
    shared = ["--model.init_args.backbone", tiny_llama, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
              "--checkpoint.monitor", "null", "--data.init_args.test_limit", "8", "--trainer.enable_progress_bar",
              "false", "--trainer.accelerator", "cpu", "--trainer.devices", "1"]
    table = sweep_main(["--tasks", "[sst2]", "--task_config", CONFIG, "--strategies", "[paired]", "--gs", "[on]",
                        "--seeds", "[13]", "--synthetic", f"[sst2={syn}, sst2@uniform={uniform}]",
                        "--variants", "[paired/on@uniform]", "--baselines", "[ft_prompt]",
                        "--baseline_config", str(REPO / "configs" / "fine_tuning" / "{task}.yaml"),
                        "--baseline_extra", json.dumps(shared), "--root", str(root), "--",
                        *shared, "--model.init_args.prompt_length", "2"])
    records = {r["row"]: r for r in map(json.loads, (root / "results.jsonl").read_text().splitlines())}
    assert set(records) == {"paired/on", "paired/on@uniform", "ft_prompt"}
    configs = {row: (root / "sst2" / folder / "seed13" / "config.yaml").read_text()
               for row, folder in (("paired/on", "paired-gs-on"), ("paired/on@uniform", "paired-gs-on-uniform"),
                                   ("ft_prompt", "ft_prompt"))}
    assert str(uniform) in configs["paired/on@uniform"] and str(syn) not in configs["paired/on@uniform"]
    assert str(syn) in configs["paired/on"] and "FineTuningModule" in configs["ft_prompt"]
    for row, record in records.items():  # each recorded score is its own run's test predictions
        folder = row.replace("/", "-gs-").replace("@", "-")
        assert {"acc": record["acc"], "f1": record["f1"]} == pytest.approx(
            scores(*runs[str(root / "sst2" / folder / "seed13")])), row
    assert "| paired + GS (uniform synthetic data) | " in table
    assert "| Prompt-based FT (LM-BFF-style, full model) | " in table


@pytest.mark.parametrize("extra,needle", [
    (["--strategies", "[mix]"], "unknown combination strategy 'mix'"),
    (["--strategies", "[paired]"], "need synthetic data"),
    (["--gs", "[maybe]"], "--gs takes on and/or off"),
    (["--synthetic", "[sst2]"], "TASK=PATH"),
    (["--task_config", "nowhere/{task}.yaml"], "config for task sst2 not found: nowhere/sst2.yaml"),
    (["--baselines", "[ft_lora]"], "unknown baseline 'ft_lora'"),
    (["--variants", "[real@uniform]"], "--variants takes ROW@NAME rows"),
    (["--variants", "[paired/on@uniform]", "--synthetic", "[sst2=x.jsonl]"], "not found"),
    (["--variants", "[real+syn@uniform]"], "needs --synthetic '[sst2@uniform=path.jsonl]'"),
    (["--baselines", "[ft_head]", "--baseline_config", "nowhere/{task}.yaml"], "baseline config for task sst2 not found"),
])
def test_bad_sweep_arguments_are_one_line(tmp_path, capsys, extra, needle):
    code, err = run(["sweep", "--tasks", "[sst2]", "--task_config", CONFIG, "--root", str(tmp_path), *extra], capsys)
    err = err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err


def test_extra_words_that_yaml_types_reach_the_runs_as_written(tmp_path, monkeypatch):
    import importlib

    seen = {}
    monkeypatch.setattr(importlib.import_module("synthtune.commands.sweep"), "_run_grid",
                        lambda grid, runner, run_missing: seen.update(extra=grid.extra, base=grid.baseline_extra) or [])
    sweep_main(["--tasks", "[sst2]", "--task_config", CONFIG, "--strategies", "[real]", "--root", str(tmp_path),
                "--extra", "[--trainer.max_steps,16,--trainer.check_val_every_n_epoch,null,--x,true]",
                "--baseline_extra", "[--model.init_args.lr,1e-5]"])
    assert seen["extra"] == ["--trainer.max_steps", "16", "--trainer.check_val_every_n_epoch", "null", "--x", "true"]
    assert seen["base"] == ("--model.init_args.lr", "1e-05")


def test_a_second_sweep_on_the_same_root_is_refused(tmp_path, capsys):
    from synthtune.paths import OutputLock

    held = OutputLock(tmp_path / "results.jsonl")
    held.acquire()
    try:
        code, err = run(["sweep", "--tasks", "[sst2]", "--task_config", CONFIG, "--strategies", "[real]",
                         "--root", str(tmp_path)], capsys)
    finally:
        held.release()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is being written by pid" in err
    assert not (tmp_path / "results.jsonl").exists()


def test_the_table_figure_draws_each_rows_mean_over_seeds_per_task(tmp_path, monkeypatch):
    from synthtune.commands.sweep import plot_table

    drawn = {}
    monkeypatch.setattr("synthtune.pipeline.report.atomic_write_png", lambda fig, path: drawn.update(fig=fig) or path)
    results = [{"task": t, "row": row, "seed": s, "acc": a} for t, row, s, a in [
        ("sst2", "real", 13, 0.5), ("sst2", "real", 21, 0.7), ("rte", "real", 13, 0.4),
        ("sst2", "paired/on", 13, 0.9)]]
    plot_table(results, ["sst2", "rte"], ["real", "paired/on"], "acc", tmp_path / "t.png")
    ax = drawn["fig"].axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == [40.0, 60.0, 90.0]  # sst2 real: mean of 50 and 70; rte real; sst2 paired (rte has none)
    assert [t.get_text() for t in ax.get_xticklabels()] == [row_name("real"), row_name("paired/on")]
    legend = drawn["fig"].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["sst2", "rte"]
    drawn.clear()
    plot_table([r for r in results if r["task"] == "sst2"], ["sst2", "rte"], ["real"], "acc", tmp_path / "t.png")
    ax = drawn["fig"].axes[0]  # rte has no results at all: no empty slot, no legend entry
    assert ax.get_legend() is None and [round(p.get_x() + p.get_width() / 2, 6) for p in ax.patches] == [0.0]

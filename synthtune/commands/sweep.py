"""``synthtune sweep``: the prompt-tuning ablation grid, strategy × {GS on, off} × seeds, as a Markdown table.

Every cell of the grid is a fit on the task's config (k-shot seed, strategy and gradient surgery set as dotted
keys, run by :mod:`synthtune.api`) followed by one test of its best checkpoint (dev accuracy; the last
checkpoint when the run has no dev set). Reference rows (``zero_shot``, ``in_context``) are a single
``synthtune test`` of the frozen LM. Gradient surgery only exists in the ``paired`` strategy (it needs a
real and a synthetic batch in the same step), so the other strategies run once per seed whatever the
GS setting. Full-model fine-tuning baselines (``--baselines '[ft_prompt,ft_head]'``: LM-BFF-style
prompt-based FT and FT with a classification head, both on the real shots) are fits of
``--baseline_config`` (``configs/fine_tuning/{task}.yaml``) with ``--baseline_extra`` arguments.
A row can also run on another synthetic set: ``--variants '[paired/on@uniform]'`` with
``--synthetic '[sst2@uniform=file.jsonl]'`` adds "paired + GS" trained on that file (e.g. DawGen data
generated with uniform token weights). Results are appended to ``<root>/results.jsonl`` as runs
finish; an interrupted sweep re-run with the same arguments skips what is already there.

Example (lists in jsonargparse's ``'[a,b]'`` form; arguments after ``--`` go to every fit/test)::

    synthtune sweep --tasks '[sst2,rte]' --strategies '[real,real+syn,paired]' --seeds '[13,21,42]' \\
        --synthetic '[sst2=syn-sst2.jsonl,rte=syn-rte.jsonl]' --reference '[zero_shot]' --root runs/sweep \\
        -- --trainer.max_steps 30 --model.init_args.prompt_length 16
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np

from synthtune.components.prompt_tuning.combination import STRATEGIES, needs_synthetic
from synthtune.errors import SynthtuneError
from synthtune.paths import OutputLock, atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

REFERENCES = ("zero_shot", "in_context")
#: Full-model fine-tuning rows -> FineTuningModule's mode.
BASELINES = {"ft_prompt": "prompt", "ft_head": "head"}
ROW_NAMES = {"zero_shot": "Zero-shot prompting", "in_context": "In-context (k demos per class)",
             "real": "Prompt tuning, real only", "syn": "Prompt tuning, synthetic only", "real+syn": "real+syn", "real+syn+ls": "real+syn+ls",
             "real->syn": "real->syn", "syn->real": "syn->real", "paired/off": "paired, no GS",
             "paired/on": "paired + GS", "ft_prompt": "Prompt-based FT (LM-BFF-style, full model)",
             "ft_head": "FT with a classification head (full model)"}
ROW_ORDER = ["zero_shot", "in_context", "real", "syn", "real+syn", "real+syn+ls", "real->syn", "syn->real",
             "paired/off", "paired/on"]


def grid_rows(strategies: list[str], gs: list[str], references: list[str], variants: list[str] = (),
              baselines: list[str] = ()) -> list[str]:
    """The table's row keys, in table order: references, strategies (``paired/on|off`` for GS), rows on
    another synthetic set (``row@variant``), then the full-model fine-tuning baselines."""
    rows = list(references)
    for strategy in strategies:
        if strategy == "paired":
            rows.extend(f"paired/{g}" for g in gs)
        else:
            rows.append(strategy)
    return [r for r in ROW_ORDER if r in rows] + list(variants) + [b for b in BASELINES if b in baselines]


def row_name(row: str) -> str:
    """The table's name of a row key (``row@variant``: the row's name and its synthetic set)."""
    base, _, variant = row.partition("@")
    name = ROW_NAMES.get(base, base)
    return f"{name} ({variant} synthetic data)" if variant else name


def split_row(row: str) -> tuple[str, str, str]:
    """``strategy[/gs][@variant]`` -> (strategy, gs, variant)."""
    base, _, variant = row.partition("@")
    strategy, _, gs = base.partition("/")
    return strategy, gs, variant


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def markdown_table(results: list[dict[str, Any]], tasks: list[str], rows: list[str], metric: str = "acc",
                   expected: int | None = None) -> str:
    """Rows = methods, columns = tasks and their average; cells ``mean ± std`` (in %) over seeds, with
    ``(n=k)`` added when a cell has fewer than ``expected`` seeds (an unfinished sweep)."""
    header = ["Method", *tasks, "Avg."]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells, means = [], []
        for task in tasks:
            values = [100 * r[metric] for r in results if r["task"] == task and r["row"] == row]
            if values:
                m, s = mean_std(values)
                means.append(m)
                partial = f" (n={len(values)})" if expected is not None and len(values) < expected else ""
                cells.append(f"{m:.1f} ± {s:.1f}{partial}")
            else:
                cells.append("–")
        avg = f"{np.mean(means):.1f}" if len(means) == len(tasks) else "–"
        lines.append("| " + " | ".join([row_name(row), *cells, avg]) + " |")
    return "\n".join(lines) + "\n"


def plot_table(results: list[dict[str, Any]], tasks: list[str], rows: list[str], metric: str, path: Path) -> Path:
    """The table as a figure: one group of bars per row, one bar per task, mean ± std over seeds in %."""
    from synthtune.pipeline.report import plot_grouped_bars

    values = {row_name(row): {task: [100 * r[metric] for r in results if r["task"] == task and r["row"] == row]
                              for task in tasks} for row in rows}
    label = {"acc": "accuracy (%)", "f1": "macro-F1 (%)"}[metric]
    return plot_grouped_bars(values, path, f"test {label}", title="mean ± std over seeds; dots: seeds")


def cell_request(subcommand: str, config: str, overrides: dict[str, Any], words: Sequence[str] = ()) -> Any:
    """One fit or test of the grid: ``config``, then ``words`` (the user's arguments after ``--``), then the cell's
    own dotted keys (seed, strategy, run folder), which win."""
    from synthtune.lightning_cli import Request

    return Request(subcommand, (config,), overrides, tuple(words))


def run_and_dump(request: Any, out_json: str) -> dict[str, float]:
    """Run one cell through :func:`synthtune.api.runs.execute` in this process and write its final metrics to
    ``out_json``."""
    from synthtune.api.runs import execute  # Lightning loads only when a sweep runs

    metrics = execute(request).metrics
    atomic_write_json(out_json, metrics)
    return metrics


class _Runner:
    def __init__(self, use_subprocess: bool) -> None:
        self.use_subprocess = use_subprocess

    def __call__(self, request: Any, out_json: Path) -> dict[str, float]:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        if not self.use_subprocess:
            return run_and_dump(request, str(out_json))
        asked = {"subcommand": request.subcommand, "configs": [str(c) for c in request.configs],
                 "overrides": dict(request.overrides), "arguments": list(request.arguments)}
        cmd = [sys.executable, "-m", "synthtune.commands.sweep", str(out_json), json.dumps(asked)]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SynthtuneError(f"`synthtune {request.subcommand} --config {request.configs[0]} ...` failed: {last}")
        return json.loads(out_json.read_text())


def _subprocess_cell(out_json: str, asked: str) -> int:
    """A --subprocess sweep's cell in its own process: run it, one line for a user's mistake (exit status 2)."""
    from synthtune.lightning_cli import Request, user_error

    request = json.loads(asked)
    try:
        run_and_dump(Request(request["subcommand"], tuple(request["configs"]), request["overrides"],
                             tuple(request["arguments"])), out_json)
    except Exception as exc:  # noqa: BLE001 - only user errors are shortened; bugs keep their traceback
        cause = user_error(exc)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 2
    return 0


def _parse_synthetic(items: list[str]) -> dict[str, str]:
    """``TASK=PATH`` (the task's synthetic set) and ``TASK@VARIANT=PATH`` (a variant's) -> {key: path}."""
    out = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise SynthtuneError(f"--synthetic takes TASK=PATH pairs (or TASK@VARIANT=PATH), got {item!r}; "
                                 "e.g. --synthetic '[sst2=syn.jsonl]'")
        if not Path(path).is_file():
            raise SynthtuneError(f"synthetic file for {task} not found: {path}; check the path")
        out[task] = path
    return out


@dataclass
class _Grid:
    """What to run: tasks × table rows × seeds, each cell a fit (+ test) or a test alone."""

    tasks: list[str]
    task_config: str
    rows: list[str]
    seeds: list[int]
    synthetic: dict[str, str]
    extra: list[str]
    root: Path
    baseline_config: str = "configs/fine_tuning/{task}.yaml"
    baseline_extra: tuple[str, ...] = ()

    def check(self, strategies: list[str], gs: list[str], references: list[str], variants: list[str] = (),
              baselines: list[str] = ()) -> None:
        bad = [s for s in strategies if s not in STRATEGIES]
        if bad:
            raise SynthtuneError(f"unknown combination strategy {bad[0]!r}; use any of {', '.join(STRATEGIES)}")
        bad = [g for g in gs if g not in ("on", "off")]
        if bad:
            raise SynthtuneError(f"--gs takes on and/or off, got {bad[0]!r}")
        bad = [r for r in references if r not in REFERENCES]
        if bad:
            raise SynthtuneError(f"unknown reference row {bad[0]!r}; use any of {', '.join(REFERENCES)}")
        bad = [b for b in baselines if b not in BASELINES]
        if bad:
            raise SynthtuneError(f"unknown baseline {bad[0]!r}; use any of {', '.join(BASELINES)}")
        for variant in variants:
            strategy, gs_setting, name = split_row(variant)
            if not name or strategy not in STRATEGIES or not needs_synthetic(strategy) or \
                    (strategy == "paired") != (gs_setting in ("on", "off")):
                raise SynthtuneError(f"--variants takes ROW@NAME rows of a strategy that uses synthetic data "
                                     f"(e.g. paired/on@uniform, real+syn@uniform), got {variant!r}")
        for task in self.tasks:
            for variant in variants:
                name = variant.partition("@")[2]
                if f"{task}@{name}" not in self.synthetic:
                    raise SynthtuneError(f"row {variant} needs --synthetic '[{task}@{name}=path.jsonl]'")
            if baselines and not Path(self.baseline_config.format(task=task)).is_file():
                raise SynthtuneError(f"baseline config for task {task} not found: "
                                     f"{self.baseline_config.format(task=task)}; pass --baseline_config with a {{task}} pattern")
            config = Path(self.task_config.format(task=task))
            if not config.is_file():
                raise SynthtuneError(f"config for task {task} not found: {config}; "
                                     f"pass --task_config with a {{task}} pattern")
            if any(needs_synthetic(s) for s in strategies) and task not in self.synthetic:
                raise SynthtuneError(f"strategies {strategies} need synthetic data but none was given for {task}; "
                                     f"pass --synthetic '[{task}=path.jsonl]' or use --strategies '[real]'")


def sweep(
    tasks: list[str],
    task_config: str = "configs/prompt_tuning/{task}.yaml",
    strategies: list[str] = list(STRATEGIES),
    gs: list[str | bool] = ["on", "off"],
    seeds: list[int] = [13, 21, 42],
    synthetic: list[str] = [],
    reference: list[str] = [],
    root: str = "runs/sweep",
    out: Optional[str] = None,
    metric: Literal["acc", "f1"] = "acc",
    subprocess: bool = False,
    table_only: bool = False,
    variants: list[str] = [],
    baselines: list[str] = [],
    baseline_config: str = "configs/fine_tuning/{task}.yaml",
    baseline_extra: list[str | int | float | bool | None] = [],
    extra: list[str | int | float | bool | None] = [],
) -> str:
    """The prompt-tuning ablation grid, strategy × {GS on, off} × seeds, as a Markdown table and a PNG beside it.

    Results are appended to <root>/results.jsonl as runs finish; a re-run skips what is there.

    Args:
        tasks: task names, e.g. [sst2,rte].
        task_config: fit config per task; {task} is replaced by the task name.
        strategies: combination strategies (real, real+syn, real+syn+ls, real->syn, syn->real, paired).
        gs: gradient surgery settings: on, off (only the paired strategy has it).
        seeds: k-shot seeds.
        synthetic: TASK=PATH synthetic JSONL per task.
        reference: reference rows: zero_shot, in_context.
        root: folder of the runs, results.jsonl and table.md.
        out: Markdown table path (default <root>/table.md).
        metric: metric in the table.
        subprocess: run every fit/test in a fresh process.
        table_only: write the table from <root>/results.jsonl without running anything missing.
        variants: rows trained on another synthetic set, ROW@NAME (e.g. [paired/on@uniform]); each needs
            --synthetic TASK@NAME=PATH.
        baselines: full-model fine-tuning rows on the real shots: ft_prompt (LM-BFF-style prompt-based FT),
            ft_head (classification head).
        baseline_config: fit config of the baselines per task; {task} is replaced by the task name.
        baseline_extra: arguments added to every baseline fit (extra goes to the prompt-tuning runs only).
        extra: arguments added to every prompt-tuning fit/test and reference test, e.g.
            [--trainer.max_steps,16,--trainer.check_val_every_n_epoch,null].
    """
    gs = ["on" if g is True else "off" if g is False else g for g in gs]  # YAML reads a bare on/off as a bool
    paths = _parse_synthetic(synthetic)
    grid = _Grid(tasks, task_config, grid_rows(strategies, gs, reference, variants, baselines), seeds, paths,
                 _arguments(extra), Path(root), baseline_config, tuple(_arguments(baseline_extra)))
    if table_only:
        results = _run_grid(grid, _Runner(subprocess), run_missing=False)
    else:
        grid.check(strategies, gs, reference, variants, baselines)
        grid.root.mkdir(parents=True, exist_ok=True)
        lock = OutputLock(grid.root / "results.jsonl")  # a second sweep on this root would interleave its appends
        lock.acquire()
        try:
            results = _run_grid(grid, _Runner(subprocess), run_missing=True)
        finally:
            lock.release()
    table = markdown_table(results, tasks, grid.rows, metric, expected=len(seeds))
    table_path = Path(out or Path(root) / "table.md")
    atomic_write_bytes(table_path, table.encode("utf-8"))
    figure = plot_table(results, tasks, grid.rows, metric, table_path.with_suffix(".png"))
    print(table)
    print(f"table written to {table_path}, figure to {figure}")
    return table


def _arguments(values: list[Any]) -> list[str]:
    """Command-line words from a list YAML may have typed: 16 -> "16", null -> "null", true -> "true"."""
    return ["null" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for v in values]


def _append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def _run_grid(grid: _Grid, run: _Runner, run_missing: bool = True) -> list[dict[str, Any]]:
    grid.root.mkdir(parents=True, exist_ok=True)
    results_path = grid.root / "results.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if results_path.is_file():
        for line in results_path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["key"]] = record
    for task in grid.tasks:
        config = grid.task_config.format(task=task)
        for row in grid.rows:
            for seed in grid.seeds:
                key = f"{task}|{row}|{seed}"
                if key in done or not run_missing:
                    continue
                if row == "zero_shot" and f"{task}|{row}|{grid.seeds[0]}" in done:
                    # Zero-shot prompting uses no training data, so every seed gives the same result.
                    done[key] = dict(done[f"{task}|{row}|{grid.seeds[0]}"], key=key, seed=seed)
                    _append(results_path, done[key])
                    continue
                run_dir = grid.root / task / row.replace("/", "-gs-").replace(">", "").replace("@", "-") / f"seed{seed}"
                seeded = {"data.init_args.seed": seed, "model.init_args.seed": seed,
                          "trainer.default_root_dir": str(run_dir)}
                started = time.time()
                fitted: dict[str, float] = {}
                if row in REFERENCES:
                    metrics = run(cell_request("test", config, {**seeded, "model.init_args.mode": row}, grid.extra),
                                  run_dir / "test.json")
                else:
                    if row in BASELINES:  # full-model fine-tuning on the real shots
                        fit = cell_request("fit", grid.baseline_config.format(task=task), {
                            **seeded, "model.init_args.mode": BASELINES[row], "data.init_args.strategy": "real"},
                            grid.baseline_extra)
                    else:
                        strategy, gs, variant = split_row(row)
                        keys = {**seeded, "data.init_args.strategy": strategy, "model.init_args.gradient_surgery": gs != "off"}
                        if needs_synthetic(strategy):
                            keys["data.init_args.synthetic"] = grid.synthetic[f"{task}@{variant}" if variant else task]
                        fit = cell_request("fit", config, keys, grid.extra)
                    if (run_dir / "checkpoints" / "last.ckpt").is_file():  # a cell killed during or after its fit resumes
                        fit = replace(fit, overrides={**fit.overrides, "ckpt_path": "last"})
                    fitted = run(fit, run_dir / "fit.json")
                    ckpt_dir = run_dir / "checkpoints"
                    ckpt = ckpt_dir / "best.ckpt" if (ckpt_dir / "best.ckpt").is_file() else ckpt_dir / "last.ckpt"
                    metrics = run(cell_request("test", str(run_dir / "config.yaml"), {
                        "ckpt_path": str(ckpt), "trainer.default_root_dir": str(run_dir)}), run_dir / "test.json")
                if "test/acc" not in metrics:
                    raise SynthtuneError(f"run {key} reported no test/acc; check {run_dir}")
                record = {"key": key, "task": task, "row": row, "seed": seed, "acc": metrics["test/acc"],
                          "f1": metrics.get("test/f1", float("nan")), "seconds": round(time.time() - started, 1)}
                if "train/conflict_rate" in fitted:  # paired + GS: share of steps whose gradients conflicted
                    record["conflict_rate"] = fitted["train/conflict_rate"]
                _append(results_path, record)
                done[key] = record
                log.info("%s: acc %.3f f1 %.3f", key, record["acc"], record["f1"])
    return [r for r in done.values() if r["task"] in grid.tasks and r["row"] in grid.rows and r["seed"] in grid.seeds]


if __name__ == "__main__":  # internal: one cell of a --subprocess sweep: OUT_JSON REQUEST_JSON
    sys.exit(_subprocess_cell(sys.argv[1], sys.argv[2]))

"""The report stage: ``report.md`` with the per-stage table, the MAUVE bar, the real-vs-synthetic embedding map,
the label balance, a few samples (per label where there are labels) and the fit's loss curve."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any, Optional

from synthtune.curation.mauve_score import SPREAD_NOTE
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_bytes, atomic_write_png
from synthtune.records import read_jsonl

LOSS_TAG = "train/loss"
SAMPLE_CHARS = 300


def label_of(row: dict[str, Any]) -> Optional[str]:
    """A row's label as shown to people: its ``label_name``, else its ``label``, else None."""
    label = row.get("label_name", row.get("label"))
    return None if label is None else str(label)


def _figure(width: float = 5.0, height: float = 3.5):
    # The Agg canvas directly, not pyplot: no global backend switch, no GUI, nothing to close.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def read_loss_curve(run: Path, tag: str = LOSS_TAG) -> list[tuple[int, float]]:
    """(step, value) of ``tag`` from a Lightning run's logs: CSV ``metrics.csv`` or TensorBoard event files.

    The newest ``lightning_logs/version_N`` that has the tag wins (a resumed fit logs into a new version;
    its steps continue the earlier ones', so every version's points are merged by step).
    """
    points: dict[int, float] = {}
    for path in sorted(run.glob("lightning_logs/version_*/metrics.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get(tag):
                    points[int(row["step"])] = float(row[tag])
    events = sorted(run.glob("lightning_logs/version_*/events.out.tfevents.*"))
    if events:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        for path in events:
            accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
            accumulator.Reload()
            if tag in accumulator.Tags().get("scalars", []):
                points.update({event.step: float(event.value) for event in accumulator.Scalars(tag)})
    return sorted(points.items())


def plot_loss(points: list[tuple[int, float]], path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([s for s, _ in points], [v for _, v in points], marker="." if len(points) < 50 else None)
    ax.set(xlabel="step", ylabel=LOSS_TAG, title="fit: training loss")
    fig.tight_layout()
    return atomic_write_png(fig, path)


def sample_counts(path: Path) -> tuple[str, str]:
    """``("k / n", "q %")`` for a JSONL of samples: how many of its rows ended at EOS ("-" for real text, which
    has no ``hit_cap``), and the share of rows holding a question mark (GSM8K questions nearly all do)."""
    if not path.is_file():
        return "-", "-"
    rows = read_jsonl(path)
    flagged = [r for r in rows if "hit_cap" in r]
    eos = f"{sum(not r['hit_cap'] for r in flagged)} / {len(flagged)}" if flagged else "-"
    asks = sum("?" in (r.get("text") or r.get("question") or "") for r in rows)
    return eos, f"{100 * asks / len(rows):.0f} %"


def plot_mauve_bars(reports: dict[str, dict[str, Any]], path: Path, title: str | None = None,
                    colors: list[str] | None = None, ylabel: str = "MAUVE") -> Path:
    """One bar per ``synthtune score mauve`` report (label -> report): the mean with its std over k-means
    seeds as an error bar, each seed's score as a dot, the mean written above the bar."""
    fig = _figure(max(3.2, 1.3 * len(reports) + 1.0), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(reports)))
    means = [r["mean"] for r in reports.values()]
    stds = [r["std"] for r in reports.values()]
    ax.bar(xs, means, yerr=stds, color=colors or "tab:orange", capsize=5, width=0.6)
    for x, report in zip(xs, reports.values()):
        seeds = list(report.get("per_seed", {}).values())
        ax.scatter([x] * len(seeds), seeds, color="black", s=8, zorder=3)
        ax.text(x, min(report["mean"] + report["std"] + 0.02, 1.02), f"{report['mean']:.2f}", ha="center", fontsize=8)
    ax.set_xticks(xs)
    ax.set_xticklabels(list(reports), fontsize=8)
    ax.set(ylim=(0, 1.08), ylabel=ylabel)
    heading = title if title is not None else f"MAUVE {means[0]:.3f}" if len(means) == 1 else None
    if heading:
        ax.set_title(heading, fontsize=9 if len(heading) > 40 else None)
    fig.tight_layout()
    return atomic_write_png(fig, path)


def plot_grouped_bars(values: dict[str, dict[str, list[float]]], path: Path, ylabel: str,
                      title: str | None = None) -> Path:
    """Rows along x, one bar per group inside each row (row -> group -> per-seed values): the mean with the
    sample std over seeds as an error bar and each seed as a dot. A group a row has no values for is left out,
    and a group no row has values for gets no bar slot and no legend entry."""
    import numpy as np

    groups = list(dict.fromkeys(g for per_row in values.values() for g, seeds in per_row.items() if seeds))
    fig = _figure(max(4.0, 0.55 * len(values) * max(1, len(groups)) + 1.5), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(groups))
    for j, group in enumerate(groups):
        xs, means, stds, dots = [], [], [], []
        for i, per_row in enumerate(values.values()):
            seeds = per_row.get(group) or []
            if seeds:
                x = i - 0.4 + width * (j + 0.5)
                xs.append(x)
                means.append(float(np.mean(seeds)))
                stds.append(float(np.std(seeds, ddof=1)) if len(seeds) > 1 else 0.0)
                dots += [(x, v) for v in seeds]
        ax.bar(xs, means, width=width * 0.9, yerr=stds, capsize=3, label=group)
        ax.scatter([x for x, _ in dots], [v for _, v in dots], color="black", s=6, zorder=3)
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(list(values), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if len(groups) > 1:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return atomic_write_png(fig, path)


def mauve_bars(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Label -> score for the MAUVE bar chart: the raw samples, the final rows and, beside each, the real rows of the
    same size (its ceiling; its dots are the draws' means)."""
    bars: dict[str, dict[str, Any]] = {}
    for label, scored in (("raw", report.get("raw")), ("final", report)):
        if not scored:
            continue
        bars[f"{label}\n({scored['num_synthetic']})"] = scored
        top = scored.get("ceiling")
        if top:
            bars[f"real, {label}\n({top['size']})"] = {"mean": top["mean"], "std": top["std_draws"],
                                               "per_seed": dict(enumerate(top["per_draw"]))}
    return bars


def plot_mauve(report: dict[str, Any], path: Path) -> Path:
    """One bar: MAUVE mean with its std over k-means seeds, each seed's score as a dot."""
    return plot_mauve_bars({"synthetic": report}, path)


def plot_labels(labels: dict[str, int], path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(list(labels), list(labels.values()), color="tab:blue")
    ax.set(xlabel="label", ylabel="rows", title="label balance of the final rows")
    fig.tight_layout()
    return atomic_write_png(fig, path)


def _text(row: dict[str, Any], field: Optional[str]) -> str:
    value = row.get(field) if field else None
    if value is None:
        value = next((v for k, v in row.items() if isinstance(v, str) and k not in ("label", "method")), "")
    text = " ".join(str(value).split())
    return text[:SAMPLE_CHARS] + ("…" if len(text) > SAMPLE_CHARS else "")


def samples(rows: list[dict[str, Any]], per_group: int, field: Optional[str]) -> list[tuple[str, str]]:
    """(label or "", text) of the first ``per_group`` rows of each label (of all rows when there are no labels)."""
    picked: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    for row in rows:
        group = label_of(row) or ""
        if counts.get(group, 0) < per_group:
            counts[group] = counts.get(group, 0) + 1
            picked.append((group, _text(row, field)))
    return picked


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def write_report(ctx, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Write ``report.md`` and its PNGs into ``folder``.

    Section keys: ``samples`` (rows shown per label, default 3), ``field`` (the text field shown; default
    ``text``, else the row's first text field).
    """
    unknown = sorted(set(section) - {"samples", "field"})
    if unknown:
        raise SynthtuneError(f"unknown report setting {unknown[0]!r}; report takes samples and field")
    outputs = {"report": "report.md"}
    lines = [f"# Pipeline report: {ctx.root.name}", "", "## Stages", "",
             "| stage | rows | seconds | finished (UTC) |", "|---|---|---|---|"]
    for name, manifest in ctx.done.items():
        lines.append(f"| {name} | {manifest.get('rows', '')} | {manifest.get('seconds', '')} | "
                     f"{manifest.get('finished_at', '')} |")

    if "fit" in ctx.done:
        points = read_loss_curve(ctx.folder("fit"))
        lines += ["", "## Fit: loss curve", ""]
        if points:
            outputs["loss_curve"] = plot_loss(points, folder / "loss_curve.png").name
            lines.append(f"![training loss](loss_curve.png)  \nlast {LOSS_TAG}: {points[-1][1]:.4f} at step "
                         f"{points[-1][0]}")
        else:
            lines.append(f"No `{LOSS_TAG}` logged under {ctx.folder('fit')}/lightning_logs (the fit ran without a "
                         "logger, or for fewer steps than trainer.log_every_n_steps).")

    answers = ctx.done.get("answers", {}).get("report", {})
    if "hit_cap" in answers:
        fate = "dropped before export (kept in `answers/capped.jsonl`)" if answers["dropped_at_cap"] else \
            "kept, flagged `hit_cap: true`"
        lines += ["", "## Answers", "",
                  f"{answers['answers']} answers; {answers['hit_cap']} stopped at the cap max_new_tokens="
                  f"{answers['max_new_tokens']} without EOS (cut off mid-solution): {fate}. {answers['kept']} kept."]

    score = ctx.done.get("score")
    if score:
        report = score["report"]
        bars = mauve_bars(report)
        colors = ["tab:gray" if label.startswith("real") else "tab:orange" for label in bars]
        outputs["mauve_bar"] = plot_mauve_bars(bars, folder / "mauve.png", colors=colors, title="MAUVE vs "
                                               f"{Path(report['reference_path']).name}").name
        lines += ["", "## MAUVE", "", "![MAUVE](mauve.png)", "",
                  f"Against {report['num_reference']} rows of `{report['reference_path']}` ({report['featurizer']} "
                  f"features, {len(report['per_seed'])} k-means seed(s)):", "",
                  "| scored | rows | buckets | MAUVE | real rows, same size | real: spread over draws |",
                  "|---|---|---|---|---|---|"]
        for label, scored in (("raw samples", report.get("raw")), ("final rows", report)):
            if scored:
                top = scored.get("ceiling")
                lines.append(f"| {label} | {scored['num_synthetic']} | {scored['clusters']} | {scored['mean']:.4f} ± "
                             f"{scored['std']:.4f} | " + (f"{top['mean']:.4f} ± {top['std']:.4f} | ±{top['std_draws']:.4f}"
                                                         f" over {top['draws']} draws |" if top else "- | - |"))
        lines += ["", f"{SPREAD_NOTE}: with a few dozen rows the score moves more with which rows are drawn"
                  + (", as the real rows' spread over draws shows; read each score against the real score of the same"
                     " size beside it (its ceiling). In the chart a synthetic bar's error bar and dots are its k-means"
                     " seeds, a real bar's are its draws." if report.get("ceiling") else "."),
                  f"Buckets: {report.get('clusters_rule', 'fixed')}."]
        if "embedding_map" in score["outputs"]:
            shutil.copyfile(ctx.folder("score") / score["outputs"]["embedding_map"]["path"],
                            folder / "embedding_map.png")
            outputs["embedding_map"] = "embedding_map.png"
            lines += ["", "## Real vs synthetic embeddings", "", "![embedding map](embedding_map.png)"]

    final = ctx.rows_before("report")
    rows = read_jsonl(final)
    labelled = [m for m in ctx.done.values() if "labels" in m]
    if labelled:
        labels = labelled[-1]["labels"]
        outputs["label_balance"] = plot_labels(labels, folder / "label_balance.png").name
        lines += ["", "## Label balance", "", "![label balance](label_balance.png)", "", "| label | rows |",
                  "|---|---|", *[f"| {k} | {v} |" for k, v in labels.items()]]

    shown = samples(rows, int(section.get("samples", 3)), section.get("field", "text"))
    lines += ["", f"## Samples ({len(rows)} final rows in `{final}`)", "", "| label | text |", "|---|---|"]
    lines += [f"| {_cell(label)} | {_cell(text)} |" for label, text in shown]
    atomic_write_bytes(folder / "report.md", ("\n".join(lines) + "\n").encode("utf-8"))
    return outputs, {"samples_shown": len(shown)}

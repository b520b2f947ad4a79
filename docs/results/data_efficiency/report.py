"""Tables and figure of docs/results/data_efficiency.md from the curve's results.jsonl files.

    python docs/results/data_efficiency/report.py runs/results-data-efficiency   # every curve-<task>/results.jsonl

For each task, k and condition: the mean test accuracy over training seeds (last and dev-selected weights), its
95 % interval from a two-level bootstrap that resamples the training seeds and the test rows (so it holds the
spread over runs as well as the test sample's), and the paired difference to ``real`` on the same seeds and the
same resampled test rows, with its interval. Writes ``tables.md`` and ``curve.png`` into this folder, and copies
each results.jsonl next to them (``results-<task>.jsonl``), with the filters' reports and the generators' sample
summaries, so every number can be recomputed.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ORDER = ["real", "real+syn", "real+random", "real+filtered", "paired+filtered"]
BOOT = 2000


def correctness(line: dict, which: str, labels: np.ndarray) -> np.ndarray:
    return (np.frombuffer(line[f"pred_{which}"].encode(), dtype=np.uint8) - ord("0")) == labels


def bootstrap(matrix: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean of a (seeds × test rows) matrix and the 2.5/97.5 % quantiles over resampled seeds and rows."""
    n_seeds, n_rows = matrix.shape
    stats = np.empty(BOOT)
    for b in range(BOOT):
        seeds = rng.integers(0, n_seeds, n_seeds)
        rows = rng.integers(0, n_rows, n_rows)
        stats[b] = matrix[np.ix_(seeds, rows)].mean()
    return float(matrix.mean()), float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def grouped(lines: list[dict], task: str) -> tuple[np.ndarray, dict[tuple, dict[int, dict]]]:
    """The test labels of ``task`` and the result lines as (tag, k, condition) -> seed -> line."""
    from synthtune.tasks import load_task, read_labeled

    spec = load_task(task)
    labels = np.array([r["label"] for r in read_labeled(spec.eval_path(), spec)])
    cells: dict[tuple, dict[int, dict]] = defaultdict(dict)
    seeded = {m["gen"] for m in map(SEEDED.match, (x["tag"] for x in lines)) if m}  # generators with per-seed runs
    for line in lines:
        for tag in tags_of(line, seeded):
            cells[(tag, line["k"], line["condition"])][line["seed"]] = line
    return labels, cells


#: the tag of a generator trained on another seed's split than 42: ``<gen>-s<seed>[/<filter>]`` (run.sh GEN_SEED)
SEEDED = re.compile(r"^(?P<gen>.+)-s(?P<seed>\d+)(?P<filter>/.+)?$")
DEFAULT_GEN_SEED = 42  # the generator without a seed suffix is trained on the seed-42 split
GEN_K = 16  # every generator is trained on a 16-shot split: a cell is "own" only when the student has those rows


def tags_of(line: dict, seeded: set[str]) -> list[str]:
    """The groups a result line belongs to. A cell whose generator was trained on the student's own seed
    (``<gen>-s<seed>`` with that seed) at k = 16 (the rows the generator was trained on) goes to ``<gen>@own``; a
    seed-42 k = 16 cell of the default generator goes to its own tag and, once other seeds have their own
    generators (``seeded``: the generators with per-seed runs), to ``<gen>@own`` too (it is seed 42's own)."""
    tag, match = line["tag"], SEEDED.match(line["tag"])
    if line["k"] != GEN_K:
        return [tag]
    if match and int(match["seed"]) == line["seed"]:
        return [f"{match['gen']}@own{match['filter'] or ''}"]
    gen, _, filt = tag.partition("/")
    if line["seed"] == DEFAULT_GEN_SEED and gen in seeded:
        return [tag, f"{gen}@own{'/' + filt if filt else ''}"]
    return [tag]


def summarize(lines: list[dict], task: str) -> list[dict]:
    labels, cells = grouped(lines, task)
    rows = []
    rng = np.random.default_rng(0)
    for (tag, k, condition), by_seed in sorted(cells.items(), key=lambda c: (c[0][0], c[0][1], ORDER.index(c[0][2]))):
        row = {"tag": tag, "k": k, "condition": condition, "seeds": sorted(by_seed),
               "n_syn": sorted({l["n_syn"] for l in by_seed.values()}),
               "conflict_rate": (float(np.mean([l["conflict_rate"] for l in by_seed.values()]))
                                 if condition == "paired+filtered" else None),
               "minutes": float(np.mean([l["seconds"] for l in by_seed.values()])) / 60}
        reference = cells.get(("", k, "real")) or cells.get((tag, k, "real"), {})
        for which in ("last", "best"):
            matrix = np.stack([correctness(by_seed[s], which, labels) for s in sorted(by_seed)]).astype(float)
            row[which] = bootstrap(matrix, rng)
            common = sorted(set(by_seed) & set(reference))
            if condition != "real" and common:
                diff = np.stack([correctness(by_seed[s], which, labels).astype(float)
                                 - correctness(reference[s], which, labels) for s in common])
                row[f"{which}_diff"] = bootstrap(diff, rng)
                row["paired_seeds"] = len(common)
        rows.append(row)
    return rows


# The comparisons that isolate one thing, besides "vs real": the filter against its matched random control (same
# rows per label, same number of rows), and gradient surgery against plain summing on the same kept rows.
CONTRASTS = [("real+filtered", "real+random", "the filter's choice (kept rows vs a random subset, same per-label counts)"),
             ("paired+filtered", "real+filtered", "gradient surgery (Alg. 2) vs summing, on the same kept rows"),
             ("real+filtered", "real+syn", "the kept half vs all rows (fewer rows, each seen twice as often)")]


def contrasts(lines: list[dict], task: str) -> list[dict]:
    """Paired differences between two synthetic conditions of one syn set (its filter tag) on the same seeds."""
    labels, cells = grouped(lines, task)
    rng = np.random.default_rng(1)
    out = []
    for tag, k in sorted({(t, k) for t, k, _ in cells if "/" in t}):
        base_tag = tag.split("/")[0]
        for a, b, what in CONTRASTS:
            first = cells.get((tag, k, a), {})
            second = cells.get((base_tag if b == "real+syn" else tag, k, b), {})
            common = sorted(set(first) & set(second))
            if not common:
                continue
            row = {"tag": tag, "k": k, "a": a, "b": b, "what": what, "seeds": common}
            for which in ("best", "last"):
                diff = np.stack([correctness(first[s], which, labels).astype(float)
                                 - correctness(second[s], which, labels) for s in common])
                row[which] = bootstrap(diff, rng)
            out.append(row)
    return out


def probes(path: Path, task: str, lines: list[dict]) -> str:
    """The reference classifiers of probe.py (the filter's own classifier; a linear probe on frozen MiniLM per k),
    each beside the fine-tuned student's real-only cells, with the same two-level bootstrap and, where the seeds
    match, the paired difference student − probe."""
    if not path.is_file():
        return ""
    labels, cells = grouped(lines, task)
    rng = np.random.default_rng(0)
    found = load(path)
    right = lambda line: ((np.frombuffer(line["pred"].encode(), dtype=np.uint8) - ord("0")) == labels).astype(float)
    out = ["| classifier | k | seeds | test acc | fine-tuned student, real only | student − probe (paired) |",
           "|---|---:|---:|---|---|---|"]
    for line in (x for x in found if x["kind"] == "filter"):
        out.append(f"| the classifier filter's scorer (its generator's split, seed {line['seed']}) | {line['k']} | 1 "
                   f"| {fmt(bootstrap(right(line)[None], rng))} | | |")
    for k in sorted({x["k"] for x in found if x["kind"] == "probe"}):
        by_seed = {x["seed"]: x for x in found if x["kind"] == "probe" and x["k"] == k}
        probe = np.stack([right(by_seed[s]) for s in sorted(by_seed)])
        student = cells.get(("", k, "real"), {})
        common = sorted(set(student) & set(by_seed))
        shown = fmt(bootstrap(np.stack([correctness(student[s], "best", labels) for s in common]).astype(float), rng)) \
            if common else ""
        diff = fmt(bootstrap(np.stack([correctness(student[s], "best", labels) - right(by_seed[s]) for s in common]),
                             rng)) if len(common) >= 3 else ""
        out.append(f"| linear probe on frozen MiniLM (the same classifier on the cell's real rows) | {k} | "
                   f"{len(by_seed)} | {fmt(bootstrap(probe, rng))} | {shown} | {diff} |")
    return "\n".join(out) + "\n"


def worth(lines: list[dict], task: str) -> list[dict]:
    """How many real rows per label a synthetic condition is worth: the k* at which the real-only curve
    (linear in log2 k between its measured points) reaches the condition's mean accuracy, with a 95 % interval
    from the same two-level bootstrap (seeds resampled per cell, test rows shared by every cell of a replicate).
    k* below the smallest or above the largest measured k is reported as censored (< or >)."""
    labels, cells = grouped(lines, task)
    mats = {key: np.stack([correctness(by_seed[s], "best", labels) for s in sorted(by_seed)]).astype(float)
            for key, by_seed in cells.items() if len(by_seed) >= 3}
    real_ks = sorted(k for tag, k, c in mats if c == "real" and tag == "")
    if len(real_ks) < 2:
        return []
    log_ks = np.log2(real_ks)

    def k_star(real_means: np.ndarray, acc: float) -> float:
        order = np.maximum.accumulate(real_means)  # the curve made monotone, so the inverse is defined
        if acc <= order[0]:
            return -np.inf
        if acc >= order[-1]:
            return np.inf
        return float(2 ** np.interp(acc, order, log_ks))

    rng = np.random.default_rng(2)
    n_rows = len(labels)
    out = []
    for (tag, k, condition), mat in sorted(mats.items(), key=lambda c: (c[0][0], c[0][1], ORDER.index(c[0][2]))):
        if condition == "real":
            continue
        point = k_star(np.array([mats[("", kk, "real")].mean() for kk in real_ks]), mat.mean())
        boot = np.empty(BOOT)
        for b in range(BOOT):
            rows = rng.integers(0, n_rows, n_rows)

            def mean(m: np.ndarray) -> float:
                return m[np.ix_(rng.integers(0, len(m), len(m)), rows)].mean()

            boot[b] = k_star(np.array([mean(mats[("", kk, "real")]) for kk in real_ks]), mean(mat))
        out.append({"tag": tag, "k": k, "condition": condition, "seeds": len(mat), "k_star": point,
                    "lo": float(np.quantile(boot, 0.025, method="inverted_cdf")),
                    "hi": float(np.quantile(boot, 0.975, method="inverted_cdf")),
                    "real_ks": real_ks})
    return out


def worth_table(rows: list[dict]) -> str:
    def show(x: float, ks: list[int]) -> str:
        return f"< {ks[0]}" if x == -np.inf else f"> {ks[-1]}" if x == np.inf else f"{x:.1f}"

    out = ["| syn set | k | condition | seeds | worth k* real rows per label [95 %] |", "|---|---:|---|---:|---|"]
    for r in rows:
        ks = r["real_ks"]
        out.append(f"| {r['tag']} | {r['k']} | {r['condition']} | {r['seeds']} | {show(r['k_star'], ks)} "
                   f"[{show(r['lo'], ks)}, {show(r['hi'], ks)}] |")
    return "\n".join(out)


def contrast_table(rows: list[dict]) -> str:
    out = ["| syn set | k | A − B | seeds | Δ dev-selected | Δ last | isolates |", "|---|---:|---|---:|---|---|---|"]
    for r in rows:
        seeds = f"{len(r['seeds'])}" + ("" if len(r["seeds"]) >= 3 else " (preliminary)")
        out.append(f"| {r['tag']} | {r['k']} | {r['a']} − {r['b']} | {seeds} | {fmt(r['best'])} | {fmt(r['last'])} | "
                   f"{r['what']} |")
    return "\n".join(out)


def fmt(cell: tuple[float, float, float] | None, pct: bool = True) -> str:
    if cell is None:
        return "–"
    m, lo, hi = (100 * x for x in cell)
    return f"{m:.1f} [{lo:.1f}, {hi:.1f}]"


def table(rows: list[dict]) -> str:
    out = ["| syn set | k | condition | seeds | syn rows | test acc, dev-selected | Δ vs real | test acc, last | Δ vs real | conflicts | min/run |",
           "|---|---:|---|---:|---:|---|---|---|---|---:|---:|"]
    for r in rows:
        conflicts = "" if r["conflict_rate"] is None else f"{r['conflict_rate']:.2f}"
        seeds = f"{len(r['seeds'])}" + ("" if len(r["seeds"]) >= 3 else " (preliminary: < 3 seeds)")
        out.append(f"| {r['tag'] or '–'} | {r['k']} | {r['condition']} | {seeds} | "
                   f"{'/'.join(map(str, r['n_syn']))} | {fmt(r['best'])} | {fmt(r.get('best_diff'))} | "
                   f"{fmt(r['last'])} | {fmt(r.get('last_diff'))} | "
                   f"{conflicts} | {r['minutes']:.1f} |")
    return "\n".join(out)


def figure(per_task: dict[str, list[dict]], path: Path) -> None:
    """Left: accuracy against k per (syn set, condition); right: the paired difference to real only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(per_task), 2, figsize=(13, 4.6 * len(per_task)), squeeze=False)
    for (ax, dax), (task, rows) in zip(axes, per_task.items()):
        series = sorted({(r["tag"], r["condition"]) for r in rows}, key=lambda s: (s[0], ORDER.index(s[1])))
        for i, (tag, condition) in enumerate(series):
            pts = sorted((r["k"], r) for r in rows
                         if (r["tag"], r["condition"]) == (tag, condition) and len(r["seeds"]) >= 3)
            if not pts:
                continue
            shift = 2 ** (0.04 * (i - len(series) / 2))  # spread the markers of one k apart
            ks = [k * shift for k, _ in pts]
            label = condition if not tag else f"{condition} ({tag})"
            mean = [100 * r["best"][0] for _, r in pts]
            err = [[100 * (r["best"][0] - r["best"][1]) for _, r in pts], [100 * (r["best"][2] - r["best"][0]) for _, r in pts]]
            ax.errorbar(ks, mean, yerr=err, marker="o", capsize=3, label=label, color=f"C{i}")
            diffs = [(k * shift, r["best_diff"]) for k, r in pts if r.get("best_diff")]
            if diffs:
                dax.errorbar([k for k, _ in diffs], [100 * d[0] for _, d in diffs],
                             yerr=[[100 * (d[0] - d[1]) for _, d in diffs], [100 * (d[2] - d[0]) for _, d in diffs]],
                             marker="o", capsize=3, label=label, color=f"C{i}", ls="none")
        for a in (ax, dax):
            a.set_xscale("log", base=2)
            a.set_xticks([4, 8, 16, 32, 64], ["4", "8", "16", "32", "64"])
            a.set_xlabel("real examples per label (k)")
            a.legend(fontsize=7)
        dax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel("test accuracy, dev-selected (%)")
        dax.set_ylabel("paired Δ to real only (points)")
        ax.set_title(f"{task}: MiniLM student, 95 % intervals (≥ 3 seeds)", fontsize=10)
        dax.set_title(f"{task}: synthetic minus real only, same seeds and test rows", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/results-data-efficiency")
    per_task: dict[str, list[dict]] = {}
    sections = []
    for results in sorted(root.glob("curve-*/results.jsonl")):
        task = results.parent.name.removeprefix("curve-")
        lines = load(results)
        shutil.copyfile(results, HERE / f"results-{task}.jsonl")
        per_task[task] = summarize(lines, task)
        sections.append(f"### {task}\n\n{table(per_task[task])}\n")
        equivalent = worth(lines, task)
        if equivalent:
            sections.append(f"#### {task}: what the synthetic rows are worth in real rows per label (k*, real-only "
                            f"curve measured at k = {', '.join(map(str, equivalent[0]['real_ks']))})\n\n"
                            f"{worth_table(equivalent)}\n")
        reference = probes(HERE / f"probe-{task}.jsonl", task, lines)
        if reference:
            sections.append(f"#### {task}: reference classifiers (probe.py; student = dev-selected weights)\n\n"
                            f"{reference}")
        paired = contrasts(lines, task)
        if paired:
            sections.append(f"#### {task}: the controls, paired on the same seeds and test rows\n\n"
                            f"{contrast_table(paired)}\n")
    for report in sorted(root.glob("dawgen-*/*.report.json")) + sorted(root.glob("dawgen-*/samples.jsonl.summary.json")):
        shutil.copyfile(report, HERE / f"{report.parent.name}-{report.name}")  # the filters' and generators' reports
    for run in sorted(root.glob("dawgen-*")):  # what a later session resumes from (run.sh copies it back)
        keep = HERE / "state" / run.name
        (keep / "checkpoints").mkdir(parents=True, exist_ok=True)
        for name in ("config.yaml", "fit.done", "samples.jsonl", "samples.jsonl.summary.json", "kept.jsonl",
                     "kept.jsonl.report.json", "kept-clf.jsonl", "kept-clf.jsonl.report.json", "checkpoints/last.ckpt"):
            if (run / name).is_file() and (name != "samples.jsonl" or (run / "samples.jsonl.summary.json").is_file()):
                shutil.copyfile(run / name, keep / name)
    (HERE / "tables.md").write_text("\n".join(sections))
    if per_task:
        figure(per_task, HERE / "curve.png")
    print("\n".join(sections))


if __name__ == "__main__":
    main()

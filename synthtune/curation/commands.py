"""Command functions behind ``synthtune curate``, ``synthtune decontaminate`` and ``synthtune score mauve``.

Each command has ``build_*_parser()`` (an :mod:`argparse` parser), ``add_*_arguments(parser)`` (to
attach the same options to a sub-parser) and ``*_main(argv) -> int``. Bad input raises
:class:`~synthtune.errors.SynthtuneError` with one line; the CLI prints it without a traceback.
Outputs are written atomically, each with a JSON report beside it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from synthtune.curation.cluster_select import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CLUSTERS,
    DEFAULT_NUM_SAMPLES,
    DEFAULT_SVD_COMPONENTS,
    curate,
    field_texts,
)
from synthtune.curation.decontaminate import DEFAULT_NGRAM, decontaminate
from synthtune.curation.embedding_map import plot_embedding_map
from synthtune.curation.featurize import DEFAULT_FEATURIZER, featurize
from synthtune.curation.mauve_score import DEFAULT_MAUVE_CLUSTERS, require_mauve, mauve_score
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_bytes, atomic_write_jsonl
from synthtune.records import read_jsonl, require_fields


# --------------------------------------------------------------------------------------------- helpers
def report_path(output: str | Path) -> Path:
    """Where the JSON report of ``output`` goes: ``<output>.report.json``."""
    output = Path(output)
    return output.with_name(output.name + ".report.json")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _read_rows(path: str | Path, strict: bool) -> tuple[list[dict[str, Any]], int]:
    """Rows of a JSONL file and how many non-blank lines were broken (skipped by ``read_jsonl``)."""
    rows = read_jsonl(path, strict=strict)
    with Path(path).open("r", encoding="utf-8") as fh:
        nonblank = sum(1 for line in fh if line.strip())
    return rows, nonblank - len(rows)


def _reference_texts(path: str | Path, field: str, strict: bool) -> list[str]:
    rows, _ = _read_rows(path, strict)
    if not rows:
        raise SynthtuneError(f"{path}: the reference file has no rows; pass a non-empty reference set")
    require_fields(rows, [field], str(path))
    return field_texts(rows, field, str(path))


def _check_distinct(output: Path, *inputs: str | Path | None) -> None:
    for other in inputs:
        if other is not None and Path(other).resolve() == output.resolve():
            raise SynthtuneError(f"--output {output} is also an input; write to a different file")


def _print_table(title: str, rows: Sequence[tuple[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("stage")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value)))
    Console().print(table)


# --------------------------------------------------------------------------------------------- curate
def add_curate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``synthtune curate`` (App. A.2 defaults)."""
    parser.add_argument("--input", required=True, help="generated rows (JSONL)")
    parser.add_argument("--output", required=True, help="where to write the curated rows (JSONL)")
    parser.add_argument("--num_samples", type=int, default=DEFAULT_NUM_SAMPLES, help="rows to keep (default 50000)")
    parser.add_argument("--field", default="text", help="field holding the text (default text)")
    parser.add_argument("--decontaminate", default=None, metavar="REFERENCE.jsonl",
                        help="drop rows sharing an n-gram with this reference (test) file")
    parser.add_argument("--reference_field", default=None, help="text field of the reference rows (default: --field)")
    parser.add_argument("--ngram", type=int, default=DEFAULT_NGRAM, help="decontamination n-gram length (default 13)")
    parser.add_argument("--svd_components", type=int, default=DEFAULT_SVD_COMPONENTS,
                        help="TF-IDF SVD rank (default 100)")
    parser.add_argument("--clusters", type=int, default=DEFAULT_CLUSTERS, help="k-means clusters (default 700)")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="k-means mini-batch (default 4096)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--strict", action="store_true", help="fail on broken JSON lines instead of skipping them")
    return parser


def build_curate_parser() -> argparse.ArgumentParser:
    """The ``synthtune curate`` parser."""
    return add_curate_arguments(argparse.ArgumentParser(
        prog="synthtune curate",
        description="Deduplicate, optionally decontaminate, and cluster-select synthetic rows (SoftSRV App. A.2).",
    ))


def run_curate(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``synthtune curate`` from parsed arguments; returns the report (also written to disk)."""
    start = time.perf_counter()
    output = Path(args.output)
    _check_distinct(output, args.input, args.decontaminate)
    rows, broken = _read_rows(args.input, args.strict)
    if not rows:
        raise SynthtuneError(f"{args.input}: no rows to curate; check the input file")
    require_fields(rows, [args.field], str(args.input))
    reference_field = args.reference_field or args.field
    references = (
        _reference_texts(args.decontaminate, reference_field, args.strict) if args.decontaminate else None
    )
    kept, report = curate(
        rows,
        num_samples=args.num_samples,
        field=args.field,
        svd_components=args.svd_components,
        n_clusters=args.clusters,
        seed=args.seed,
        references=references,
        ngram=args.ngram,
        batch_size=args.batch_size,
        broken_lines=broken,
        source=str(args.input),
    )
    atomic_write_jsonl(output, kept)
    report = {
        "command": "curate",
        "input_path": str(args.input),
        "output_path": str(output),
        "field": args.field,
        "reference_path": args.decontaminate,
        "reference_field": reference_field if args.decontaminate else None,
        "num_references": len(references) if references is not None else 0,
        "svd_components_requested": args.svd_components,
        "clusters_requested": args.clusters,
        **report,
        "seconds": round(time.perf_counter() - start, 3),
    }
    _write_json(report_path(output), report)
    _print_table(
        f"curate: {args.input} -> {output}",
        [
            ("input lines", report["input"]),
            ("broken lines skipped", report["broken_lines_skipped"]),
            ("after dedup", report["after_dedup"]),
            ("decontaminated dropped", report["decontaminated_dropped"]),
            ("contamination rate", report["contamination_rate"]),
            ("clusters used", report["clusters_used"]),
            ("selected", report["selected"]),
            ("output", report["output"]),
        ],
    )
    return report


def curate_main(argv: list[str] | None = None) -> int:
    """``synthtune curate ...``; returns the exit status (0)."""
    run_curate(build_curate_parser().parse_args(argv))
    return 0


# --------------------------------------------------------------------------------------------- decontaminate
def add_decontaminate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``synthtune decontaminate`` (App. A.3 defaults)."""
    parser.add_argument("--input", required=True, help="rows to clean (JSONL)")
    parser.add_argument("--reference", required=True, help="reference (test) rows (JSONL)")
    parser.add_argument("--output", required=True, help="where to write the clean rows (JSONL)")
    parser.add_argument("--field", default="text", help="text field of the input rows (default text)")
    parser.add_argument("--reference_field", default=None, help="text field of the reference rows (default: --field)")
    parser.add_argument("--ngram", type=int, default=DEFAULT_NGRAM, help="n-gram length (default 13)")
    parser.add_argument("--strict", action="store_true", help="fail on broken JSON lines instead of skipping them")
    return parser


def build_decontaminate_parser() -> argparse.ArgumentParser:
    """The ``synthtune decontaminate`` parser."""
    return add_decontaminate_arguments(argparse.ArgumentParser(
        prog="synthtune decontaminate",
        description="Drop rows that share a word n-gram with a reference set (SoftSRV App. A.3).",
    ))


def run_decontaminate(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``synthtune decontaminate`` from parsed arguments; returns the report (also written to disk)."""
    start = time.perf_counter()
    output = Path(args.output)
    _check_distinct(output, args.input, args.reference)
    rows, broken = _read_rows(args.input, args.strict)
    if not rows:
        raise SynthtuneError(f"{args.input}: no rows to decontaminate; check the input file")
    require_fields(rows, [args.field], str(args.input))
    texts = field_texts(rows, args.field, str(args.input))
    reference_field = args.reference_field or args.field
    references = _reference_texts(args.reference, reference_field, args.strict)
    result = decontaminate(texts, references, args.ngram)
    atomic_write_jsonl(output, [rows[i] for i in result.kept])
    report = {
        "command": "decontaminate",
        "input_path": str(args.input),
        "reference_path": str(args.reference),
        "output_path": str(output),
        "field": args.field,
        "reference_field": reference_field,
        "ngram": args.ngram,
        "input": len(rows) + broken,
        "broken_lines_skipped": broken,
        "num_references": len(references),
        "num_reference_ngrams": result.num_reference_ngrams,
        "decontaminated_dropped": len(result.dropped),
        "contamination_rate": result.contamination_rate,
        "dropped_rows": result.dropped[:100],
        "output": len(result.kept),
        "seconds": round(time.perf_counter() - start, 3),
    }
    _write_json(report_path(output), report)
    _print_table(
        f"decontaminate ({args.ngram}-grams): {args.input} -> {output}",
        [
            ("input lines", report["input"]),
            ("broken lines skipped", broken),
            ("references", len(references)),
            ("dropped", report["decontaminated_dropped"]),
            ("contamination rate", report["contamination_rate"]),
            ("output", report["output"]),
        ],
    )
    return report


def decontaminate_main(argv: list[str] | None = None) -> int:
    """``synthtune decontaminate ...``; returns the exit status (0)."""
    run_decontaminate(build_decontaminate_parser().parse_args(argv))
    return 0


# --------------------------------------------------------------------------------------------- score mauve
def add_mauve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``synthtune score mauve`` (App. A.7 defaults)."""
    parser.add_argument("--synthetic", required=True, help="synthetic rows (JSONL)")
    parser.add_argument("--reference", required=True, help="real rows to compare with (JSONL)")
    parser.add_argument("--field", default="text", help="text field of the synthetic rows (default text)")
    parser.add_argument("--reference_field", default=None, help="text field of the reference rows (default: --field)")
    parser.add_argument("--featurizer", default=DEFAULT_FEATURIZER,
                        help="minilm (default), smollm2-135m, or a causal LM name/folder")
    parser.add_argument("--clusters", type=int, default=DEFAULT_MAUVE_CLUSTERS,
                        help="MAUVE k-means buckets (default 32)")
    parser.add_argument("--seeds", type=int, default=3, help="number of k-means seeds 0..N-1 (default 3)")
    parser.add_argument("--kmeans_num_redo", type=int, default=5, help="k-means restarts per seed (default 5)")
    parser.add_argument("--kmeans_max_iter", type=int, default=500, help="k-means iterations (default 500)")
    parser.add_argument("--max_samples", type=int, default=None,
                        help="score a random subset of at most N rows from each file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max_samples subset and the plot (default 0)")
    parser.add_argument("--output", default=None, help="JSON report (default: <synthetic>.mauve.json)")
    parser.add_argument("--plot", default=None, help="2-D embedding map PNG (default: <synthetic>.mauve.png)")
    parser.add_argument("--no_plot", action="store_true", help="skip the embedding map")
    parser.add_argument("--no_cache", action="store_true", help="recompute features instead of using the cache")
    parser.add_argument("--strict", action="store_true", help="fail on broken JSON lines instead of skipping them")
    return parser


def build_mauve_parser() -> argparse.ArgumentParser:
    """The ``synthtune score mauve`` parser (without the ``mauve`` word)."""
    return add_mauve_arguments(argparse.ArgumentParser(
        prog="synthtune score mauve",
        description="MAUVE between synthetic and real texts, mean ± std over k-means seeds (SoftSRV App. A.7).",
    ))


def build_score_parser() -> argparse.ArgumentParser:
    """The ``synthtune score`` parser; its first word names the metric (only ``mauve`` so far)."""
    parser = argparse.ArgumentParser(prog="synthtune score", description="Score synthetic data against real data.")
    metrics = parser.add_subparsers(dest="metric", required=True, metavar="METRIC")
    add_mauve_arguments(metrics.add_parser("mauve", help="MAUVE (needs pip install 'synthtune[mauve]')"))
    return parser


def _subsample(texts: list[str], max_samples: int | None, rng: np.random.Generator) -> list[str]:
    if max_samples is None or len(texts) <= max_samples:
        return texts
    return [texts[i] for i in np.sort(rng.choice(len(texts), size=max_samples, replace=False))]


def run_mauve(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``synthtune score mauve`` from parsed arguments; returns the report (also written to disk)."""
    start = time.perf_counter()
    if args.seeds < 1:
        raise SynthtuneError(f"--seeds must be at least 1, got {args.seeds}")
    if args.max_samples is not None and args.max_samples < 1:
        raise SynthtuneError(f"--max_samples must be at least 1, got {args.max_samples}")
    require_mauve()  # fail before any featurisation when the optional extra is missing
    synthetic_path = Path(args.synthetic)
    stem = synthetic_path.with_suffix("")
    output = Path(args.output) if args.output else Path(f"{stem}.mauve.json")
    plot = None if args.no_plot else (Path(args.plot) if args.plot else Path(f"{stem}.mauve.png"))
    _check_distinct(output, args.synthetic, args.reference)
    reference_field = args.reference_field or args.field

    rows, broken = _read_rows(synthetic_path, args.strict)
    if not rows:
        raise SynthtuneError(f"{synthetic_path}: no synthetic rows to score; check the file")
    require_fields(rows, [args.field], str(synthetic_path))
    synthetic = field_texts(rows, args.field, str(synthetic_path))
    reference = _reference_texts(args.reference, reference_field, args.strict)
    rng = np.random.default_rng(args.seed)
    synthetic = _subsample(synthetic, args.max_samples, rng)
    reference = _subsample(reference, args.max_samples, rng)
    need = 2 * args.clusters
    if min(len(synthetic), len(reference)) < need:
        raise SynthtuneError(
            f"MAUVE with {args.clusters} clusters needs at least {need} rows per file, got {len(synthetic)} synthetic "
            f"and {len(reference)} reference; add rows or lower --clusters"
        )

    p = featurize(synthetic, args.featurizer, cache=not args.no_cache)
    q = featurize(reference, args.featurizer, cache=not args.no_cache)
    score = mauve_score(
        p, q, num_clusters=args.clusters, seeds=tuple(range(args.seeds)),
        kmeans_num_redo=args.kmeans_num_redo, kmeans_max_iter=args.kmeans_max_iter,
    )
    if plot is not None:
        title = f"{synthetic_path.name} vs {Path(args.reference).name} ({args.featurizer})"
        plot_embedding_map(q, p, plot, title=title, seed=args.seed)
    report = {
        "command": "score mauve",
        "metric": "mauve",
        "mean": score["mean"],
        "std": score["std"],
        "per_seed": {str(k): v for k, v in score["per_seed"].items()},
        "seeds": list(range(args.seeds)),
        "clusters": args.clusters,
        "featurizer": args.featurizer,
        "feature_dim": int(p.shape[1]),
        "num_synthetic": len(synthetic),
        "num_reference": len(reference),
        "broken_lines_skipped": broken,
        "max_samples": args.max_samples,
        "synthetic_path": str(synthetic_path),
        "reference_path": str(args.reference),
        "field": args.field,
        "reference_field": reference_field,
        "plot": str(plot) if plot is not None else None,
        "seconds": round(time.perf_counter() - start, 3),
    }
    _write_json(output, report)
    from rich.console import Console

    Console().print(
        f"MAUVE = [bold]{score['mean']:.4f} ± {score['std']:.4f}[/bold] over {args.seeds} seed(s), "
        f"{args.clusters} clusters, featuriser {args.featurizer} ({len(synthetic)} synthetic vs {len(reference)} "
        f"reference); report {output}" + (f", map {plot}" if plot else "")
    )
    return report


def mauve_main(argv: list[str] | None = None) -> int:
    """``synthtune score mauve ...`` with the arguments after ``mauve``; returns the exit status (0)."""
    run_mauve(build_mauve_parser().parse_args(argv))
    return 0


def score_main(argv: list[str] | None = None) -> int:
    """``synthtune score METRIC ...`` (``argv`` starts with the metric, e.g. ``["mauve", "--synthetic", ...]``)."""
    args = build_score_parser().parse_args(argv)
    if args.metric == "mauve":
        run_mauve(args)
    return 0

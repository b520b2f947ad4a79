"""``synthtune score METRIC``: :mod:`synthtune.api.score` (``mauve``, ``novelty``), then a line of what it found."""

from __future__ import annotations

from typing import Any

from synthtune.api.score import SPREAD_NOTE, mauve_report_path, novelty_report_path
from synthtune.api.score import mauve as mauve_score, novelty as novelty_score
from synthtune.commands.files import printed


def show_mauve(report: dict[str, Any], arguments: dict[str, Any]) -> None:
    from rich.console import Console

    top, png = report["ceiling"], report["plot"]
    Console().print(
        f"MAUVE = [bold]{report['mean']:.4f} ± {report['std']:.4f}[/bold] over {len(report['seeds'])} seed(s), "
        f"{report['clusters']} clusters, featuriser {report['featurizer']} ({report['num_synthetic']} synthetic vs "
        f"{report['num_reference']} reference)"
        + (f"; {report['num_synthetic']} real rows of {arguments['ceiling']}: {top['mean']:.4f} ± {top['std']:.4f}, "
           f"±{top['std_draws']:.4f} over {arguments['ceiling_draws']} draws" if top else "")
        + f"; {SPREAD_NOTE}; report {mauve_report_path(arguments['synthetic'], arguments['output'])}"
        + (f", map {png}" if png else ""),
        markup=True, highlight=False, soft_wrap=True,
    )


def show_novelty(report: dict[str, Any], arguments: dict[str, Any]) -> None:
    ctx, tr, nn = report["context"], report["train"], report["nearest_train_cosine"]
    print(f"novelty of {report['num_samples']} samples ({report['distinct_rows']} distinct): "
          + (f"{ctx['share']:.1%} copy their context, " if ctx else "")
          + f"{tr['share']:.1%} copy a train row (> {arguments['threshold']:g} of their {arguments['ngram']}-grams)"
          + (f"; nearest train cosine mean {nn['mean']:.3f}, {nn['share_near']:.1%} at ≥ {arguments['near_cosine']:g}"
             if nn else "")
          + f"; report {novelty_report_path(arguments['synthetic'], arguments['output'])}")


mauve = printed(mauve_score, show_mauve)
novelty = printed(novelty_score, show_novelty)

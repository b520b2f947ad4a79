"""The pipeline's stages, each a thin call of a :mod:`synthtune.api` function (a data step or a Lightning run),
in :data:`ORDER`.

A :class:`Stage` says what it reads (``inputs``: name -> path, fingerprinted into its key), what settings it
runs with (``settings``: the YAML section, and for Lightning stages the config as the CLI composes it) and how
it runs into its own folder (``run``: returns its outputs, relative to the folder, and the command's report).
A stage that makes rows writes them to ``rows.jsonl``; the next stage reads the rows of the last one before it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from synthtune.api.curate import curate
from synthtune.api.decontaminate import decontaminate
from synthtune.api.filter import filter_rows
from synthtune.api.runs import execute, predict
from synthtune.api.score import mauve
from synthtune.api.synalign import select
from synthtune.checkpoint_io import resume_checkpoint
from synthtune.errors import SynthtuneError
from synthtune.lightning_cli import Request, compose
from synthtune.paths import atomic_write_json, atomic_write_jsonl
from synthtune.pipeline.overrides import stage_overrides
from synthtune.records import read_jsonl

ROWS = "rows.jsonl"
log = logging.getLogger("synthtune")


@dataclass
class Context:
    """What a stage may know about the pipeline: its root, every enabled section, the finished stages.

    Args:
        root: the pipeline's root folder (one sub-folder per stage).
        sections: enabled stage name -> its YAML section.
        done: stage name -> manifest of the stages finished so far (this run or an earlier one).
    """

    root: Path
    sections: dict[str, dict[str, Any]]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)

    def folder(self, stage: str) -> Path:
        """The folder ``stage`` writes into."""
        return self.root / stage

    def rows_before(self, stage: str) -> Path:
        """The rows file of the last enabled row-making stage before ``stage``."""
        before = [name for name in ORDER[:ORDER.index(stage)] if name in self.sections and STAGES[name].makes_rows]
        if not before:
            raise SynthtuneError(f"the {stage} stage needs rows, but no stage before it makes any; "
                                 "add a predict section to the pipeline")
        return self.folder(before[-1]) / ROWS

    def composed(self, stage: str) -> dict[str, Any]:
        """The Lightning config a finished stage ran with (``settings.composed`` of its manifest), or {}."""
        return self.done.get(stage, {}).get("settings", {}).get("composed", {})


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    Args:
        inputs: (context, settings) -> name -> file or folder it reads.
        run: (context, section, folder) -> (outputs: name -> path relative to folder, the command's report).
        settings: (context, section) -> what is recorded and keyed (default: the section itself).
        makes_rows: whether it writes ``rows.jsonl`` for the stages after it.
    """

    inputs: Callable[[Context, dict], dict[str, Path]]
    run: Callable[[Context, dict, Path], tuple[dict[str, str], dict[str, Any]]]
    settings: Optional[Callable[[Context, dict], dict[str, Any]]] = None
    makes_rows: bool = False


def require(section: dict[str, Any], stage: str, *keys: str) -> None:
    """Refuse a section that lacks one of ``keys``, in one line."""
    missing = [key for key in keys if section.get(key) in (None, "")]
    if missing:
        raise SynthtuneError(f"the pipeline's {stage} section needs {', '.join(missing)}; "
                             f"add `{missing[0]}:` under `{stage}:`")


def command_kwargs(section: dict[str, Any], stage: str, reserved: tuple[str, ...]) -> dict[str, Any]:
    """The section as keyword arguments of the stage's command, refusing the paths the pipeline sets."""
    taken = [key for key in reserved if key in section]
    if taken:
        raise SynthtuneError(f"the pipeline sets {stage}.{taken[0]} itself (the stage's folder); remove it")
    return dict(section)


# ------------------------------------------------------------------------------------------ Lightning stages
LIGHTNING_KEYS = {"fit": {"config", "overrides"}, "predict": {"config", "overrides"},
                  "answers": {"config", "field", "overrides", "keep_capped"}, "align": {"config", "real", "overrides"}}
CONTEXTS = "contexts.json"
DEMOS = "demos.jsonl"
ALIGN_FIT, ALIGN_PREDICT, WEIGHTS = "weights", "resample", "weights.jsonl"
ALL_ANSWERS, CAPPED = "all_answers.jsonl", "capped.jsonl"


def lightning_request(ctx: Context, stage: str, section: dict[str, Any], folder: Path) -> Request:
    """The ``synthtune fit/predict`` run of a Lightning stage, its folder as ``default_root_dir``: the stage's
    config, then what the pipeline feeds it from the stages before (rows, contexts, demonstrations), then the
    section's ``overrides``, then the stage's own folder and output."""
    allowed = LIGHTNING_KEYS[stage]
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise SynthtuneError(f"unknown {stage} setting {unknown[0]!r}; {stage} takes {', '.join(sorted(allowed))} "
                             "(put Lightning options in overrides: {key: value})")
    overrides, words = stage_overrides(section, stage)
    root = {"trainer.default_root_dir": str(folder)}
    if stage == "fit":
        require(section, stage, "config")
        return Request("fit", (section["config"],), {**overrides, **root}, words)
    writer = {"writer.output_path": str(folder / ROWS)}
    if stage == "answers":  # every answer goes to all_answers.jsonl; rows.jsonl gets those not cut at the cap
        require(section, stage, "config")
        rows = {"data.init_args.path": str(ctx.rows_before(stage)), "data.init_args.field": str(section.get("field", "text"))}
        return Request("predict", (section["config"], rows), {**overrides, **root,
                                                                "writer.output_path": str(folder / ALL_ANSWERS)}, words)
    if stage == "align":  # MMD weights fitted on the rows so far against the real set; predict resamples
        require(section, stage, "config")
        rows = {"data.init_args.synthetic": str(ctx.rows_before(stage)), "data.init_args.real": str(align_real(ctx, section)),
                "model.init_args.resample_output": str(folder.parent / ROWS)}
        return Request("fit", (section["config"], rows), {**overrides, **root}, words)
    chosen = {}  # what the stages before predict made: GP-chosen contexts, selected demonstrations
    if "contexts" in ctx.sections:
        chosen["data.init_args.context_indices"] = str(ctx.folder("contexts") / CONTEXTS)
    if "select" in ctx.sections:
        chosen["data.init_args.path"] = str(ctx.folder("select") / DEMOS)
    if "fit" in ctx.sections:  # predict from the fitted run, as its own config says
        fit = ctx.folder("fit")
        chosen = {"ckpt_path": str(fit / "checkpoints" / "last.ckpt"), **chosen}
        return Request("predict", (fit / "config.yaml", chosen), {**overrides, **root, **writer}, words)
    require(section, stage, "config")
    return Request("predict", (section["config"], chosen), {**overrides, **root, **writer}, words)


def align_real(ctx: Context, section: dict[str, Any]) -> Path:
    """The real rows the align stage matches: ``real``, else the demonstrations of the select stage."""
    if section.get("real"):
        return Path(section["real"])
    if "select" in ctx.sections:
        return ctx.folder("select") / DEMOS
    raise SynthtuneError("the pipeline's align section needs real (the real rows to align with, e.g. the training "
                         "split); add `real:` under `align:`")


def lightning_settings(stage: str) -> Callable[[Context, dict], dict[str, Any]]:
    def settings(ctx: Context, section: dict[str, Any]) -> dict[str, Any]:
        folder = ctx.folder(stage) / ALIGN_FIT if stage == "align" else ctx.folder(stage)
        return {**section, "composed": compose(lightning_request(ctx, stage, section, folder))}
    return settings


def data_path(composed: dict[str, Any]) -> Optional[Path]:
    """The data file a composed Lightning config reads (``data.init_args.path``), when it is a file."""
    path = ((composed.get("data") or {}).get("init_args") or {}).get("path")
    return Path(path) if isinstance(path, str) and Path(path).is_file() else None


def resumed(asked: Request, checkpoint: Optional[Path]) -> Request:
    """``asked`` resuming from ``checkpoint`` (``ckpt_path``), or as it is when there is none."""
    return replace(asked, overrides={**asked.overrides, "ckpt_path": str(checkpoint)}) if checkpoint else asked


def _data_input(ctx: Context, settings: dict[str, Any]) -> dict[str, Path]:
    path = data_path(settings["composed"])
    return {"data": path} if path else {}


def _fit_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    resume = resume_checkpoint(folder / "checkpoints")  # last.ckpt, or the newest left if it was deleted
    execute(resumed(lightning_request(ctx, "fit", section, folder), resume))  # a killed fit resumes
    return {"config": "config.yaml", "checkpoint": "checkpoints/last.ckpt"}, {}


def _predict_inputs(ctx: Context, settings: dict[str, Any]) -> dict[str, Path]:
    found = {}
    if "contexts" in ctx.sections:
        found["contexts"] = ctx.folder("contexts") / CONTEXTS
    if "select" in ctx.sections:
        found["demos"] = ctx.folder("select") / DEMOS
    if "fit" in ctx.sections:
        fit = ctx.folder("fit")
        return {**found, "fit_config": fit / "config.yaml", "checkpoint": fit / "checkpoints" / "last.ckpt"}
    return {**_data_input(ctx, settings), **found}


def _predict_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    execute(lightning_request(ctx, "predict", section, folder))  # the JSONL writer resumes a killed predict
    return {"rows": ROWS}, {}


def split_capped(source: Path, kept: Path, capped: Path, keep_capped: bool = False) -> dict[str, Any]:
    """Copy the answers of ``source`` to ``kept``, leaving out (into ``capped``) those that stopped at the length
    cap without EOS (``hit_cap``): they are cut off mid-solution. With ``keep_capped`` they stay in ``kept``
    too, flagged by their ``hit_cap``. Both files are written atomically; returns the counts."""
    rows = read_jsonl(source)
    cut = [row for row in rows if row.get("hit_cap")]
    atomic_write_jsonl(capped, cut)
    atomic_write_jsonl(kept, rows if keep_capped else [row for row in rows if not row.get("hit_cap")])
    return {"answers": len(rows), "hit_cap": len(cut), "dropped_at_cap": 0 if keep_capped else len(cut),
            "kept": len(rows) if keep_capped else len(rows) - len(cut)}


def _answers_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Answer the rows so far (the JSONL writer resumes a killed predict), then drop the answers cut at the cap."""
    execute(lightning_request(ctx, "answers", section, folder))
    report = split_capped(folder / ALL_ANSWERS, folder / ROWS, folder / CAPPED, bool(section.get("keep_capped")))
    summary = folder / f"{ALL_ANSWERS}.summary.json"  # the JSONL writer's count of rows ended at EOS / at the cap
    cap = json.loads(summary.read_text(encoding="utf-8")).get("max_new_tokens") if summary.is_file() else None
    report["max_new_tokens"] = cap
    if report["hit_cap"]:
        verb = "kept, flagged hit_cap" if section.get("keep_capped") else f"dropped (in {folder / CAPPED})"
        log.info("answers: %d of %d answers stopped at the cap max_new_tokens=%s without EOS; %s",
                 report["hit_cap"], report["answers"], cap, verb)
    return {"rows": ROWS, "all_answers": ALL_ANSWERS, "capped": CAPPED}, report


def _align_inputs(ctx: Context, settings: dict[str, Any]) -> dict[str, Path]:
    return {"rows": ctx.rows_before("align"), "real": align_real(ctx, ctx.sections["align"])}


def _align_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Fit the MMD weights into ``weights/`` (resuming a killed fit), then predict them and resample into
    ``rows.jsonl`` (``resample/`` holds the predict run; the JSONL writer resumes a killed predict)."""
    fit = folder / ALIGN_FIT
    last, resume = fit / "checkpoints" / "last.ckpt", resume_checkpoint(fit / "checkpoints")
    execute(resumed(lightning_request(ctx, "align", section, fit), resume))
    predict(fit / "config.yaml", {"ckpt_path": str(last), "trainer.default_root_dir": str(folder / ALIGN_PREDICT),
                                  "writer.output_path": str(folder / WEIGHTS)})
    report = json.loads((folder / f"{ROWS}.report.json").read_text(encoding="utf-8"))
    return {"rows": ROWS, "weights": WEIGHTS, "checkpoint": f"{ALIGN_FIT}/checkpoints/last.ckpt"}, report


# ------------------------------------------------------------------------------- before generation
def _select_inputs(ctx: Context, settings: dict[str, Any]) -> dict[str, Path]:
    from synthtune.tasks import load_task

    require(settings, "select", "task")
    return {"pool": Path(settings["pool"]) if settings.get("pool") else load_task(settings["task"]).folder / "train.jsonl"}


def _select_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """``synthtune synalign select``: GP exploration-aware demonstrations into ``demos.jsonl``."""
    kwargs = command_kwargs(section, "select", ("output", "coverage_png"))
    report = select(output=str(folder / DEMOS), **kwargs)
    return {"demos": DEMOS}, report


def _contexts_inputs(ctx: Context, settings: dict[str, Any]) -> dict[str, Path]:
    if "fit" not in ctx.sections:
        raise SynthtuneError("the contexts stage orders the training contexts of a fit; add a fit section "
                             "(a SoftSRV config) or remove `contexts:`")
    return {"fit_config": ctx.folder("fit") / "config.yaml", **_data_input(ctx, {"composed": ctx.composed("fit")})}


def _contexts_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    from synthtune.pipeline.contexts import gp_context_order

    unknown = sorted(set(section) - {"tau", "noise", "seed"})
    if unknown:
        raise SynthtuneError(f"unknown contexts setting {unknown[0]!r}; contexts takes tau, noise and seed")
    order, report = gp_context_order(ctx.composed("fit"), **section)
    atomic_write_json(folder / CONTEXTS, order)
    return {"contexts": CONTEXTS}, report


# ------------------------------------------------------------------------------------------- data commands
def _rows_input(stage: str) -> Callable[[Context, dict], dict[str, Path]]:
    def inputs(ctx: Context, settings: dict[str, Any]) -> dict[str, Path]:
        found = {"rows": ctx.rows_before(stage)}
        if settings.get("reference"):
            found["reference"] = Path(settings["reference"])
        return found
    return inputs


# ----------------------------------------------------------------------------------------------- label filter
def filter_run_folder(ctx: Context, section: dict[str, Any]) -> Optional[Path]:
    """The DawGen run ``synthtune filter`` reads (model, task, real shots): ``run`` of the section, else the fit's."""
    if section.get("run"):
        return Path(section["run"])
    return ctx.folder("fit") if "fit" in ctx.sections else None


def _filter_inputs(ctx: Context, settings: dict[str, Any]) -> dict[str, Path]:
    found = {"rows": ctx.rows_before("filter")}
    run = filter_run_folder(ctx, settings)
    if run is not None:
        found["run_config"] = run / "config.yaml"
        if settings.get("scorer", "generator") == "generator":
            found["checkpoint"] = run / "checkpoints" / "last.ckpt"
    for key in ("real", "judge_train"):
        if settings.get(key):
            found[key] = Path(settings[key])
    return found


def _filter_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """``synthtune filter``: keep the rows whose text agrees with their label, per label (the fit's DawGen
    prompts score them unless ``scorer: classifier``)."""
    kwargs = command_kwargs(section, "filter", ("input", "output", "report"))
    run = filter_run_folder(ctx, section)
    if run is not None:
        kwargs["run"] = str(run)
    report = filter_rows(input=str(ctx.rows_before("filter")), output=str(folder / ROWS), **kwargs)
    return {"rows": ROWS}, report


def _curate_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    kwargs = command_kwargs(section, "curate", ("input", "output"))
    return {"rows": ROWS}, curate(input=str(ctx.rows_before("curate")), output=str(folder / ROWS), **kwargs)


def _decontaminate_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    require(section, "decontaminate", "reference")
    kwargs = command_kwargs(section, "decontaminate", ("input", "output"))
    report = decontaminate(input=str(ctx.rows_before("decontaminate")), output=str(folder / ROWS), **kwargs)
    return {"rows": ROWS}, report


#: Keys of a data stage's section that the pipeline reads itself (not options of the stage's command).
PIPELINE_KEYS = {"score": {"raw_field"}}


def _score_inputs(ctx: Context, settings: dict[str, Any]) -> dict[str, Path]:
    found = _rows_input("score")(ctx, settings)
    if settings.get("ceiling"):
        found["ceiling"] = Path(settings["ceiling"])
    if settings.get("raw_field"):
        found["raw"] = raw_rows(ctx)
    return found


def raw_rows(ctx: Context) -> Path:
    """The rows of the first row-making stage (every raw sample, before curation), for ``score.raw_field``."""
    made = [name for name in ORDER if name in ctx.sections and STAGES[name].makes_rows]
    if not made:
        raise SynthtuneError("score.raw_field scores the raw samples, but no stage makes rows; add a predict section")
    return ctx.folder(made[0]) / ROWS


def _score_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """MAUVE of the final rows (``mauve.json``, with the map) and, with ``raw_field``, of every raw sample
    (``mauve_raw.json``, its ``raw``), each against the same reference and, with ``ceiling``, next to as many real
    rows scored the same way."""
    require(section, "score", "reference")
    kwargs = command_kwargs(section, "score", ("synthetic", "output", "plot"))
    raw_field = kwargs.pop("raw_field", None)  # PIPELINE_KEYS["score"]
    outputs = {"mauve": "mauve.json"}
    raw = None
    if raw_field:
        raw_kwargs = {**kwargs, "field": raw_field, "no_plot": True}
        raw = mauve(synthetic=str(raw_rows(ctx)), output=str(folder / "mauve_raw.json"), **raw_kwargs)
        outputs["mauve_raw"] = "mauve_raw.json"
    report = mauve(synthetic=str(ctx.rows_before("score")), output=str(folder / "mauve.json"),
                   plot=str(folder / "embedding_map.png"), **kwargs)
    if report.get("plot"):
        outputs["embedding_map"] = "embedding_map.png"
    return outputs, {**report, "raw": raw} if raw else report


# ------------------------------------------------------------------------------------- export and report
def _summary_inputs(stage: str) -> Callable[[Context, dict], dict[str, Path]]:
    """The final rows and the manifest of every enabled stage before ``stage`` (what its card/report shows)."""
    def inputs(ctx: Context, settings: dict[str, Any]) -> dict[str, Path]:
        found = {"rows": ctx.rows_before(stage)}
        for name in ORDER[:ORDER.index(stage)]:
            if name in ctx.sections:
                found[f"{name}_manifest"] = ctx.folder(name) / "manifest.json"
        return found
    return inputs


def _export_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    from synthtune.pipeline.export import export

    return export(ctx, section, folder)


def _report_run(ctx: Context, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    from synthtune.pipeline.report import write_report

    return write_report(ctx, section, folder)


def _with_pipeline(ctx: Context, section: dict[str, Any]) -> dict[str, Any]:
    """The section plus every other section: a card and a report record every setting."""
    return {**section, "pipeline": {name: ctx.sections[name] for name in ORDER if name in ctx.sections}}


#: The stages in the order they run; a pipeline runs the ones its YAML has a section for.
ORDER = ["select", "fit", "contexts", "predict", "filter", "curate", "decontaminate", "answers", "align", "score",
         "export", "report"]
STAGES: dict[str, Stage] = {
    "select": Stage(_select_inputs, _select_run),
    "fit": Stage(_data_input, _fit_run, lightning_settings("fit")),
    "contexts": Stage(_contexts_inputs, _contexts_run),
    "predict": Stage(_predict_inputs, _predict_run, lightning_settings("predict"), makes_rows=True),
    "filter": Stage(_filter_inputs, _filter_run, makes_rows=True),
    "curate": Stage(_rows_input("curate"), _curate_run, makes_rows=True),
    "decontaminate": Stage(_rows_input("decontaminate"), _decontaminate_run, makes_rows=True),
    "answers": Stage(_rows_input("answers"), _answers_run, lightning_settings("answers"), makes_rows=True),
    "align": Stage(_align_inputs, _align_run, lightning_settings("align"), makes_rows=True),
    "score": Stage(_score_inputs, _score_run),
    "export": Stage(_summary_inputs("export"), _export_run, _with_pipeline),
    "report": Stage(_summary_inputs("report"), _report_run, _with_pipeline),
}

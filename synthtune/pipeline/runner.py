"""Run a pipeline: every enabled stage in order, each skipped when its manifest matches, under the root's lock.

A stage's folder also holds ``.started`` (the key it is being run with). A rerun whose key equals it, or equals
the key of the folder's manifest (a finished stage one of whose outputs was deleted or changed), resumes into
the folder as it is (a fit restarts from ``last.ckpt``, or the newest checkpoint left; a predict from the rows
on disk); a rerun with another key (the settings or an input changed) clears the folder first, so no stale file
survives. A folder whose origin cannot be told (a ``manifest.json`` that cannot be parsed, or files but neither
a manifest nor ``.started``) is never cleared: the run stops with one line, and only when the user names that
stage (``--from_stage``/``--stages``) is the folder set aside, renamed, not deleted, and the stage run again.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from synthtune.api.dataset_card import versions
from synthtune.errors import SynthtuneError
from synthtune.pipeline.lock import RootLock
from synthtune.pipeline.manifest import (MANIFEST, UnreadableManifest, earlier_keys, fingerprint, is_current, made_with,
                                         read_manifest, stage_key, write_manifest)
from synthtune.pipeline.report import label_of
from synthtune.pipeline.stages import ORDER, ROWS, STAGES, Context
from synthtune.records import read_jsonl

log = logging.getLogger("synthtune")
STARTED = ".started"


def selected_stages(enabled: list[str], stages: Optional[str], from_stage: Optional[str]) -> list[str]:
    """The enabled stages to run: all, the comma-separated ``stages``, or ``from_stage`` and those after it."""
    if stages and from_stage:
        raise SynthtuneError("give --stages or --from_stage, not both")
    names = [s.strip() for s in stages.split(",") if s.strip()] if stages else [from_stage] if from_stage else []
    for name in names:
        if name not in ORDER:
            raise SynthtuneError(f"unknown stage {name!r}; the stages are {', '.join(ORDER)}")
        if name not in enabled:
            raise SynthtuneError(f"stage {name!r} has no section in this pipeline; add `{name}:` to its YAML")
    if from_stage:
        return enabled[enabled.index(from_stage):]
    return [name for name in enabled if name in names] if names else list(enabled)


def row_counts(path: Path) -> dict[str, Any]:
    """``rows`` and, where rows carry a label, ``labels`` (label -> count) of a rows file."""
    rows = read_jsonl(path)
    counts: dict[str, Any] = {"rows": len(rows)}
    labels = Counter(label for label in map(label_of, rows) if label is not None)
    if labels:
        counts["labels"] = dict(sorted(labels.items()))
    return counts


def set_aside(folder: Path, name: str, named: bool, why: str) -> Path:
    """Rename a stage ``folder`` whose origin cannot be told to ``<folder>.set-aside-<UTC time>`` (never delete
    it) when the user named the stage; otherwise stop with one line naming the problem and the fix."""
    if not named:
        raise SynthtuneError(f"the {name} stage cannot tell what made {folder}: {why}; nothing was deleted. Restore "
                             f"or move it, or pass --from_stage {name} to run {name} again with the folder set aside "
                             f"(renamed to {folder.name}.set-aside-<time>, not deleted)")
    aside = folder.with_name(f"{folder.name}.set-aside-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}")
    folder.rename(aside)
    log.warning("pipeline: %s (%s) moved to %s; running %s again", folder, why, aside, name)
    return aside


def readable_manifest(folder: Path, name: str, named: bool) -> Optional[dict[str, Any]]:
    """The stage's manifest, or None when it has none; one that cannot be parsed stops the run (or, for a stage
    the user named, has its folder set aside and counts as none)."""
    try:
        return read_manifest(folder)
    except UnreadableManifest as exc:
        set_aside(folder, name, named, f"{exc.path} cannot be read ({exc.why})")
        return None


def run_stage(ctx: Context, name: str, named: bool = False) -> dict[str, Any]:
    """Run one stage into its folder unless its manifest matches; returns its manifest (``ran``: whether it ran).

    Args:
        ctx: the pipeline so far.
        name: the stage.
        named: whether the user named this stage (``--from_stage``/``--stages``): only then is a folder whose
            origin cannot be told set aside instead of stopping the run.
    """
    stage, section, folder = STAGES[name], ctx.sections[name], ctx.folder(name)
    settings = stage.settings(ctx, section) if stage.settings else dict(section)
    inputs = stage.inputs(ctx, settings)
    for label, path in inputs.items():
        if not Path(path).exists():
            raise SynthtuneError(f"the {name} stage reads {path} ({label}), which does not exist; "
                                 "fix the path in the pipeline's YAML, or run the stage that makes it")
    fingerprints = {label: fingerprint(path) for label, path in inputs.items()}
    key = stage_key(settings, fingerprints)
    manifest = readable_manifest(folder, name, named)
    if is_current(manifest, key, folder, fingerprints):
        log.info("pipeline: %s is up to date (%s); skipped", name, folder / "manifest.json")
        return {**manifest, "ran": False}
    started = folder / STARTED
    recorded = manifest["key"] if manifest else started.read_text().strip() if started.is_file() else None
    same = made_with(manifest, key, fingerprints) if manifest else recorded in {key} | earlier_keys(settings, fingerprints)
    if recorded is None and folder.exists() and any(folder.iterdir()):
        set_aside(folder, name, named, f"it holds files but neither {MANIFEST} nor {STARTED}")
    elif folder.exists() and not same:
        shutil.rmtree(folder)  # made with other settings or inputs: nothing in it may leak into this run
    elif manifest:  # finished with these settings, but an output was deleted or changed: resume into it
        log.warning("pipeline: %s finished before, but its outputs are not as its manifest records; resuming it "
                    "into %s", name, folder)
    folder.mkdir(parents=True, exist_ok=True)
    started.write_text(key)
    (folder / MANIFEST).unlink(missing_ok=True)  # the folder is being run again; a new manifest ends it
    log.info("pipeline: running %s into %s", name, folder)
    start = time.perf_counter()
    outputs, report = stage.run(ctx, section, folder)
    manifest = {
        "stage": name,
        "key": key,
        "settings": settings,
        "inputs": {label: {"path": str(inputs[label]), "sha256": sha} for label, sha in fingerprints.items()},
        "outputs": {label: {"path": path, "sha256": fingerprint(folder / path)} for label, path in outputs.items()},
        "versions": versions(),
        **(row_counts(folder / ROWS) if "rows" in outputs else {}),
        "report": report,
        "seconds": round(time.perf_counter() - start, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_manifest(folder, manifest)  # last: a stage killed before this line runs again
    started.unlink()
    log.info("pipeline: %s finished in %.0f s%s", name, manifest["seconds"],
             f" ({manifest['rows']} rows)" if "rows" in manifest else "")
    return {**manifest, "ran": True}


def run_pipeline(root: str | Path, sections: dict[str, Optional[dict[str, Any]]], stages: Optional[str] = None,
                 from_stage: Optional[str] = None) -> dict[str, dict[str, Any]]:
    """Run the enabled stages of ``sections`` (stage name -> YAML section or None) under ``root``, each through
    its :mod:`synthtune.api` function.

    Stages before the selected ones must have finished already (their manifests are read, not checked).
    Returns stage name -> manifest (with ``ran``) of every stage read or run.
    """
    unknown = sorted(set(sections) - set(ORDER))
    if unknown:
        raise SynthtuneError(f"unknown pipeline section {unknown[0]!r}; the stages are {', '.join(ORDER)}")
    enabled = [name for name in ORDER if sections.get(name) is not None]
    if not enabled:
        raise SynthtuneError(f"the pipeline has no stage; add a section for one of {', '.join(ORDER)}")
    chosen = selected_stages(enabled, stages, from_stage)
    named = {s.strip() for s in (stages or "").split(",") if s.strip()} | ({from_stage} if from_stage else set())
    repo_id = (sections.get("export") or {}).get("push_to_hub")
    if repo_id and "export" in chosen:
        from synthtune.pipeline.export import refuse_offline

        refuse_offline(repo_id)  # before any stage runs, so a refused push changes nothing on disk
    ctx = Context(Path(root), {name: dict(sections[name] or {}) for name in enabled})
    with RootLock(ctx.root):
        for name in enabled:
            if name in chosen:
                ctx.done[name] = run_stage(ctx, name, named=name in named)
            elif any(ORDER.index(name) < ORDER.index(c) for c in chosen):
                manifest = readable_manifest(ctx.folder(name), name, named=False)
                if manifest is None:
                    raise SynthtuneError(f"stage {name} has not finished under {ctx.root}, and the stages asked for "
                                         f"need it; run it first (--stages {name} or --from_stage {name})")
                ctx.done[name] = {**manifest, "ran": False}
    return ctx.done

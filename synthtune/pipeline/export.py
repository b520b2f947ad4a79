"""The export stage: the final rows as a Hugging Face dataset (``save_to_disk`` and Parquet) with a dataset card
that records where every row came from; ``push_to_hub`` only when asked and online."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import yaml

from synthtune.api.export import DATASET_DIR, PARQUET, export as save_dataset
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_bytes
from synthtune.pipeline.dataset_card import card_data, licenses_line, merge_hub_metadata, relative
from synthtune.records import read_jsonl

CARD = "README.md"
EXPORT_KEYS = ("name", "push_to_hub", "private", "license", "source_license", "language")


def provenance(ctx) -> dict[str, Any]:
    """Method, backbone, source data, decontamination, MAUVE and rows per stage, read from the manifests."""
    composed = ctx.composed("fit") or ctx.composed("predict")
    model = composed.get("model") or {}
    data = composed.get("data") or {}
    decontaminate = ctx.done.get("decontaminate", {}).get("report", {})
    mauve = ctx.done.get("score", {}).get("report", {})
    answers = ctx.done.get("answers", {}).get("report", {})
    align = ctx.done.get("align", {})
    return {
        "method": model.get("class_path"),
        "backbone": (model.get("init_args") or {}).get("backbone"),
        "source_data": {"class_path": data.get("class_path"), **{k: v for k, v in (data.get("init_args") or {}).items()
                                                                  if k in ("path", "task", "split", "text_template")}},
        "decontamination": {k: decontaminate.get(k) for k in ("reference_path", "reference_field", "ngram",
                                                              "decontaminated_dropped", "contamination_rate")}
        if decontaminate else None,
        "mauve": {**{k: mauve.get(k) for k in ("mean", "std", "featurizer", "clusters", "num_synthetic",
                                               "num_reference", "reference_path", "ceiling", "spread")},
                  "raw": {k: mauve["raw"].get(k) for k in ("mean", "std", "clusters", "num_synthetic", "ceiling")}
                  if mauve.get("raw") else None} if mauve else None,
        "answers_cut_at_cap": {k: answers.get(k) for k in ("answers", "hit_cap", "dropped_at_cap", "kept",
                                                           "max_new_tokens")} if "hit_cap" in answers else None,
        "alignment": {"real": align["inputs"]["real"]["path"],
                      **{k: align["report"].get(k) for k in ("mmd2_uniform", "mmd2_weighted", "mmd2_resampled",
                                                             "effective_sample_size", "num_resample")}}
        if align else None,
        "rows_per_stage": {name: m["rows"] for name, m in ctx.done.items() if "rows" in m},
        "labels_per_stage": {name: m["labels"] for name, m in ctx.done.items() if "labels" in m},
        "versions": next(iter(ctx.done.values()), {}).get("versions"),
    }


def dataset_card(name: str, facts: dict[str, Any], settings: dict[str, Any], num_rows: int,
                 labelled: bool = False, section: Optional[dict[str, Any]] = None,
                 curation: Optional[dict[str, Any]] = None) -> str:
    """A dataset card (``huggingface_hub.DatasetCard``): front matter the Hub indexes, then the provenance, the
    rows per stage, the curation report and every setting of the pipeline, with paths made relative."""
    from huggingface_hub import DatasetCard

    section = section or {}
    facts, settings = relative(facts), relative(settings)
    front = card_data(name, facts, num_rows, labelled, section).to_yaml()
    mauve = facts["mauve"]
    decon = facts["decontamination"]
    lines = [f"---\n{front}\n---", f"# {name}", "",
             f"{num_rows} synthetic rows made by the synthtune pipeline.", "",
             "## Provenance", "",
             f"- method: `{facts['method']}`", f"- backbone: `{facts['backbone']}`",
             f"- source data: `{json.dumps(facts['source_data'])}`", licenses_line(facts, section)]
    if decon:
        lines.append(f"- decontamination: {decon['decontaminated_dropped']} rows dropped (rate "
                     f"{decon['contamination_rate']}) for sharing a {decon['ngram']}-gram with "
                     f"`{decon['reference_path']}`")
    align = facts.get("alignment")
    if align:
        lines.append(f"- SynAlign MMD resampling toward `{align['real']}`: MMD² {align['mmd2_uniform']:.5f} (uniform) -> "
                     f"{align['mmd2_weighted']:.5f} (weighted) -> {align['mmd2_resampled']:.5f} (resampled rows), "
                     f"effective sample size {align['effective_sample_size']:.1f}")
    cut = facts.get("answers_cut_at_cap")
    if cut:
        lines.append(f"- answers: {cut['hit_cap']} of {cut['answers']} stopped at the cap max_new_tokens="
                     f"{cut['max_new_tokens']} without EOS; "
                     + (f"{cut['dropped_at_cap']} dropped, none shipped" if cut["dropped_at_cap"] or not cut["hit_cap"]
                        else "kept, flagged `hit_cap: true`"))
    if mauve:
        for label, scored in (("raw samples", mauve.get("raw")), ("final rows", mauve)):
            if not scored:
                continue
            top = scored.get("ceiling")
            head = f"MAUVE ({label})" if mauve.get("raw") else "MAUVE"
            lines.append(f"- {head}: {scored['mean']:.4f} ± {scored['std']:.4f} against "
                         f"`{mauve['reference_path']}` ({mauve['featurizer']}, {scored['clusters']} clusters, "
                         f"{scored['num_synthetic']} synthetic vs {mauve['num_reference']} real)"
                         + (f"; {top['size']} real rows of `{top['path']}`: {top['mean']:.4f} ± {top['std']:.4f} "
                            f"(±{top['std_draws']:.4f} over {top['draws']} draws)" if top else ""))
        lines.append(f"  ({mauve.get('spread') or 'the ± is over k-means seeds'}; at this size which rows are drawn "
                     "moves the score more)")
    lines += ["", "## Rows per stage", "", "| stage | rows |", "|---|---|"]
    lines += [f"| {stage} | {rows} |" for stage, rows in facts["rows_per_stage"].items()]
    for stage, labels in facts["labels_per_stage"].items():
        lines += ["", f"Labels after {stage}: " + ", ".join(f"{k}: {v}" for k, v in labels.items())]
    if curation:
        lines += ["", "## Curation report", "", "```json", json.dumps(relative(curation), indent=2), "```"]
    lines += ["", "## Every setting", "", "```yaml", yaml.safe_dump(settings, sort_keys=False).rstrip(), "```",
              "", "## Versions", "", "```json", json.dumps(facts["versions"], indent=2), "```", ""]
    return str(DatasetCard("\n".join(lines)))


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is switched off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE",
                                                                                     "TRANSFORMERS_OFFLINE"))


def refuse_offline(repo_id: str) -> None:
    """Refuse ``push_to_hub`` in one line when the Hub is switched off."""
    if hub_offline():
        raise SynthtuneError(f"export.push_to_hub {repo_id} needs the network, but the Hugging Face Hub is offline "
                             "(HF_HUB_OFFLINE); unset it, or remove export.push_to_hub")


def push(folder: Path, repo_id: str, private: bool) -> None:
    """Upload the exported dataset and its card to the Hub (refused in one line when offline or failing)."""
    refuse_offline(repo_id)
    from datasets import load_from_disk
    from huggingface_hub import HfApi, hf_hub_download

    try:
        load_from_disk(str(folder / DATASET_DIR)).push_to_hub(repo_id, private=private)
        # push_to_hub wrote a README holding dataset_info/configs: keep them in the card that replaces it
        written = Path(hf_hub_download(repo_id, CARD, repo_type="dataset")).read_text(encoding="utf-8")
        card = merge_hub_metadata((folder / CARD).read_text(encoding="utf-8"), written)
        HfApi().upload_file(path_or_fileobj=card.encode("utf-8"), path_in_repo=CARD, repo_id=repo_id,
                            repo_type="dataset")
    except Exception as exc:  # noqa: BLE001 - network and auth failures are the user's to fix
        raise SynthtuneError(f"push to the Hub repo {repo_id} failed ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); log in with `huggingface-cli login` "
                             "and check the repo id, or remove export.push_to_hub") from None


def export(ctx, section: dict[str, Any], folder: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Write ``dataset/`` (``save_to_disk``), ``data.parquet`` and ``README.md``; push when asked.

    Section keys: ``name`` (the card's title, default the root's name), ``push_to_hub`` (a repo id),
    ``private`` (push as a private dataset), ``license`` (the card's Hub license id; default ``other``, with the
    backbone's and source data's licenses stated), ``source_license`` (the source data's, when no task
    ``meta.json`` says it), ``language`` (a code or a list; default ``en`` for the bundled tasks).
    """
    unknown = sorted(set(section) - set(EXPORT_KEYS))
    if unknown:
        raise SynthtuneError(f"unknown export setting {unknown[0]!r}; export takes {', '.join(EXPORT_KEYS)}")
    repo_id: Optional[str] = section.get("push_to_hub")
    if repo_id:
        refuse_offline(repo_id)  # before writing anything
    rows = read_jsonl(ctx.rows_before("export"))
    if not rows:
        raise SynthtuneError(f"no rows left to export in {ctx.rows_before('export')}; loosen curation or make more rows")
    save_dataset(rows, folder)
    facts = provenance(ctx)
    settings = {name: ctx.sections[name] for name in ctx.sections}
    curation = ctx.done.get("curate", {}).get("report")
    card = dataset_card(section.get("name") or ctx.root.name, facts, settings, len(rows),
                        labelled=any("label" in r for r in rows), section=section, curation=curation)
    atomic_write_bytes(folder / CARD, card.encode("utf-8"))
    atomic_write_bytes(folder / DATASET_DIR / CARD, card.encode("utf-8"))
    if repo_id:
        push(folder, repo_id, bool(section.get("private", False)))
    return {"dataset": DATASET_DIR, "parquet": PARQUET, "card": CARD}, {"provenance": facts, "pushed_to": repo_id}

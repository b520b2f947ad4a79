"""The export stage: the final rows as a Hugging Face dataset (``save_to_disk`` and Parquet) with a dataset card
that records where every row came from; ``push_to_hub`` only when asked and online."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from synthtune.api.dataset_card import (config_facts, dataset_card, decontamination_facts, mauve_facts,
                                        merge_hub_metadata)
from synthtune.api.export import CARD, DATASET_DIR, PARQUET, write_export
from synthtune.errors import SynthtuneError
from synthtune.records import read_jsonl

EXPORT_KEYS = ("name", "push_to_hub", "private", "license", "source_license", "language")


def provenance(ctx) -> dict[str, Any]:
    """Method, backbone, source data, decontamination, MAUVE and rows per stage, read from the manifests."""
    composed = ctx.composed("fit") or ctx.composed("predict")
    decontaminate = ctx.done.get("decontaminate", {}).get("report", {})
    mauve = ctx.done.get("score", {}).get("report", {})
    answers = ctx.done.get("answers", {}).get("report", {})
    align = ctx.done.get("align", {})
    return {
        **config_facts(composed),
        "decontamination": decontamination_facts(decontaminate),
        "mauve": mauve_facts(mauve),
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
    facts = provenance(ctx)
    settings = {name: ctx.sections[name] for name in ctx.sections}
    curation = ctx.done.get("curate", {}).get("report")
    card = dataset_card(section.get("name") or ctx.root.name, facts, settings, len(rows),
                        labelled=any("label" in r for r in rows), section=section, curation=curation)
    write_export(rows, folder, card)
    if repo_id:
        push(folder, repo_id, bool(section.get("private", False)))
    return {"dataset": DATASET_DIR, "parquet": PARQUET, "card": CARD}, {"provenance": facts, "pushed_to": repo_id}

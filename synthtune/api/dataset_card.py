"""The exported dataset's card, built with ``huggingface_hub``'s ``DatasetCard``/``DatasetCardData``.

The front matter holds what the Hub indexes (a valid size category, license, language, source datasets, task
category, tags); the body holds the provenance, the rows per stage, the curation report and every setting.
Paths are written relative to the working directory (a file outside it by its name only), so a card never
carries a user's absolute local paths. :func:`merge_hub_metadata` keeps the ``dataset_info``/``configs``
that ``datasets.Dataset.push_to_hub`` writes when our card replaces its README.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

# The Hub's size_categories values (huggingface.co/docs/hub/datasets-cards), upper bounds exclusive.
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
                   (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"), (1_000_000_000_000, "100B<n<1T")]

#: Packages whose versions a card (and every pipeline manifest) records.
VERSIONED = ("synthtune", "torch", "transformers", "lightning", "datasets")

# Licenses of the backbones synthtune bundles (from their model cards).
BUNDLED_BACKBONE_LICENSES = {"smollm2-135m": "apache-2.0"}


def size_category(num_rows: int) -> str:
    """The Hub's size category of ``num_rows`` rows."""
    for bound, name in SIZE_CATEGORIES:
        if num_rows < bound:
            return name
    return "n>1T"


def relative(value: Any, base: Optional[Path] = None) -> Any:
    """``value`` with every absolute path in it made relative to ``base`` (default: the working directory),
    or reduced to its file name when it lies outside ``base``; dicts and lists are walked."""
    base = (base or Path.cwd()).resolve()
    if isinstance(value, dict):
        return {k: relative(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [relative(v, base) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and "\n" not in value:
        path = Path(value)
        try:
            return str(path.resolve().relative_to(base))
        except ValueError:
            return path.name
    return value


def backbone_license(backbone: Optional[str]) -> Optional[str]:
    """The backbone's license: known for bundled aliases, else the ``license`` of a local model card."""
    if not backbone:
        return None
    if backbone in BUNDLED_BACKBONE_LICENSES:
        return BUNDLED_BACKBONE_LICENSES[backbone]
    readme = Path(backbone) / "README.md"
    if readme.is_file():
        from huggingface_hub import ModelCard

        try:
            return ModelCard.load(readme).data.to_dict().get("license")
        except Exception:  # noqa: BLE001 - a malformed model card only loses the license line
            return None
    return None


def source_meta(source_data: dict[str, Any]) -> dict[str, Any]:
    """The ``meta.json`` of the source data's task folder (a bundled task or a file beside one), or ``{}``."""
    from synthtune.tasks import data_root

    folders = []
    if source_data.get("task"):
        folders += [Path(str(source_data["task"])), data_root() / str(source_data["task"])]
    if source_data.get("path"):
        folders.append(Path(str(source_data["path"])).parent)
    for folder in folders:
        if (folder / "meta.json").is_file():
            try:
                return json.loads((folder / "meta.json").read_text())
            except (OSError, ValueError):
                return {}
    return {}


def card_data(name: str, facts: dict[str, Any], num_rows: int, labelled: bool, section: dict[str, Any]):
    """The card's front matter as a ``DatasetCardData``.

    ``license`` is the user's to choose (``export.license``, a Hub license id); without it the card says
    ``other`` and the body states the backbone's and the source data's licenses it derives from.
    """
    from huggingface_hub import DatasetCardData

    meta = source_meta(facts.get("source_data") or {})
    language = section.get("language") or meta.get("language") or (["en"] if meta else None)
    source = meta.get("dataset") or Path(str((facts.get("source_data") or {}).get("path") or "")).stem or None
    return DatasetCardData(
        pretty_name=name,
        size_categories=[size_category(num_rows)],
        license=section.get("license") or "other",
        language=[language] if isinstance(language, str) else language,
        source_datasets=[f"extended|{source}"] if source else None,
        task_categories=["text-classification" if labelled else "text-generation"],
        tags=["synthetic", "synthtune"],
    )


def licenses_line(facts: dict[str, Any], section: dict[str, Any]) -> str:
    """One line stating the licenses the rows derive from, and which license the card declares."""
    meta = source_meta(facts.get("source_data") or {})
    model = backbone_license(facts.get("backbone")) or "not stated by the model"
    data = section.get("source_license") or meta.get("license") or "not stated (set export.source_license)"
    declared = section.get("license") or "other (set export.license to a Hub license id)"
    return (f"- licenses: the rows were written by `{facts.get('backbone')}` (license: {model}) from source data "
            f"licensed {data}; this card declares {declared}")


def merge_hub_metadata(ours: str, theirs: str) -> str:
    """Our card with the ``dataset_info`` and ``configs`` keys of the card ``push_to_hub`` wrote (``theirs``)."""
    from huggingface_hub import DatasetCard

    mine, hub = DatasetCard(ours), DatasetCard(theirs)
    data = mine.data.to_dict()
    for key in ("dataset_info", "configs"):
        if key in hub.data.to_dict():
            data[key] = hub.data.to_dict()[key]
    return f"---\n{yaml.safe_dump(data, sort_keys=False, allow_unicode=True)}---\n{mine.text}"


def versions() -> dict[str, Optional[str]]:
    """Installed versions of :data:`VERSIONED` (None where one is missing)."""
    found: dict[str, Optional[str]] = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    if found["synthtune"] is None:  # a source checkout without an installed distribution
        import synthtune

        found["synthtune"] = synthtune.__version__
    return found


def _name_of(backbone: Any) -> Optional[str]:
    """The model name of a config's backbone (a name, or a spec mapping since the option bundles)."""
    from synthtune.components.backbone_spec import backbone_name

    return backbone_name(backbone) if backbone else None


def config_facts(composed: Mapping[str, Any]) -> dict[str, Any]:
    """Method, backbone and source data of the run a Lightning config (``config.yaml``, as composed) describes."""
    model = composed.get("model") or {}
    data = composed.get("data") or {}
    return {
        "method": model.get("class_path"),
        "backbone": _name_of((model.get("init_args") or {}).get("backbone")),
        "source_data": {"class_path": data.get("class_path"), **{k: v for k, v in (data.get("init_args") or {}).items()
                                                                  if k in ("path", "task", "split", "text_template")}},
    }


def decontamination_facts(report: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """What the card says of a ``decontaminate`` report, or None without one."""
    if not report:
        return None
    return {k: report.get(k) for k in ("reference_path", "reference_field", "ngram", "decontaminated_dropped",
                                       "contamination_rate")}


def mauve_facts(report: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """What the card says of a MAUVE (``score``) report, or None without one."""
    if not report:
        return None
    return {**{k: report.get(k) for k in ("mean", "std", "featurizer", "clusters", "num_synthetic", "num_reference",
                                          "reference_path", "ceiling", "spread")},
            "raw": {k: report["raw"].get(k) for k in ("mean", "std", "clusters", "num_synthetic", "ceiling")}
            if report.get("raw") else None}


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

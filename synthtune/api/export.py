"""``export``: rows as a Hugging Face dataset on disk (``save_to_disk`` and Parquet) with its dataset card, as the
pipeline's export stage writes them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from synthtune.api.dataset_card import (config_facts, dataset_card, decontamination_facts, mauve_facts, relative,
                                        versions)
from synthtune.api.files import Rows, rows_dataset
from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_bytes

DATASET_DIR = "dataset"
PARQUET = "data.parquet"
CARD = "README.md"


def write_export(rows: Rows, folder: Union[str, os.PathLike], card: str) -> "datasets.Dataset":  # noqa: F821
    """``<folder>/dataset/`` (``load_from_disk`` reads it), ``<folder>/data.parquet`` and the ``card`` as
    ``<folder>/README.md`` and ``<folder>/dataset/README.md``; returns the dataset."""
    dataset = rows_dataset(rows)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dataset.save_to_disk(str(folder / DATASET_DIR))
    dataset.to_parquet(str(folder / PARQUET))
    atomic_write_bytes(folder / CARD, card.encode("utf-8"))
    atomic_write_bytes(folder / DATASET_DIR / CARD, card.encode("utf-8"))
    return dataset


def export(rows: Rows, folder: Union[str, os.PathLike], name: Optional[str] = None,
           run: Optional["Run"] = None, reports: Optional[Mapping[str, Mapping[str, Any]]] = None,  # noqa: F821
           license: Optional[str] = None, source_license: Optional[str] = None,
           language: Optional[Union[str, list[str]]] = None) -> "datasets.Dataset":  # noqa: F821
    """Write ``rows`` to ``<folder>/dataset/`` (``load_from_disk`` reads it) and ``<folder>/data.parquet`` with a
    dataset card (``<folder>/README.md``, ``huggingface_hub.DatasetCard``), the same three the pipeline's export
    stage writes; returns the dataset.

    Args:
        rows: what to export: a rows file (JSONL, CSV, Parquet, a ``save_to_disk`` folder), a
            ``datasets.Dataset`` or a list of rows.
        folder: where (created if missing).
        name: the card's title (default: the folder's name).
        run: the run that wrote the rows (:class:`~synthtune.api.Run`): the card names its method, backbone and
            source data.
        reports: what the data steps returned, by command (``curate``, ``decontaminate``, ``score``): the card
            shows the curation report, the rows decontamination dropped and the MAUVE score.
        license: the license the card declares (a Hub license id; default ``other``, with the backbone's and
            the source data's licenses stated).
        source_license: the source data's license, when no task ``meta.json`` says it.
        language: the rows' language code(s) (default ``en`` for the bundled tasks).
    """
    dataset = rows_dataset(rows)
    if len(dataset) == 0:
        raise SynthtuneError(f"no rows to export in {rows if isinstance(rows, (str, os.PathLike)) else 'the rows given'}"
                             "; loosen curation or make more rows")
    reports = dict(reports or {})
    unknown = sorted(set(reports) - {"curate", "decontaminate", "score"})
    if unknown:
        raise SynthtuneError(f"export reads the reports of curate, decontaminate and score, not {unknown[0]!r}; "
                             "remove it from reports")
    composed = run_config(run) if run is not None else {}
    facts = {**config_facts(composed), "decontamination": decontamination_facts(reports.get("decontaminate")),
             "mauve": mauve_facts(reports.get("score")), "answers_cut_at_cap": None, "alignment": None,
             "rows_per_stage": {"export": len(dataset)}, "labels_per_stage": {}, "versions": versions()}
    section = {key: value for key, value in (("license", license), ("source_license", source_license),
                                             ("language", language)) if value}
    settings = {"export": {"rows": relative(str(rows)) if isinstance(rows, (str, os.PathLike)) else "given",
                           **section}}
    card = dataset_card(name or Path(folder).resolve().name, facts, settings, len(dataset),
                        labelled="label" in dataset.column_names, section=section, curation=reports.get("curate"))
    return write_export(dataset, folder, card)


def run_config(run: "Run") -> dict[str, Any]:  # noqa: F821
    """The config a run saved (its ``config.yaml``), as a mapping."""
    import yaml

    try:
        return yaml.safe_load(Path(run.config).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SynthtuneError(f"the run's config {run.config} cannot be read ({exc.__class__.__name__}); "
                             "pass the Run that fit or predict returned") from None

"""``export``: rows as a Hugging Face dataset on disk (``save_to_disk`` and Parquet), as the pipeline exports them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

from synthtune.errors import SynthtuneError
from synthtune.records import read_jsonl

DATASET_DIR = "dataset"
PARQUET = "data.parquet"


def export(rows: Union[str, os.PathLike, "datasets.Dataset", list[dict[str, Any]]],  # noqa: F821
           folder: Union[str, os.PathLike]) -> "datasets.Dataset":  # noqa: F821
    """Write ``rows`` (a JSONL file, a ``datasets.Dataset`` or a list of rows) to ``<folder>/dataset/``
    (``load_from_disk`` reads it) and ``<folder>/data.parquet``; returns the dataset.

    Args:
        rows: what to export.
        folder: where (created if missing).
    """
    from datasets import Dataset

    if isinstance(rows, (str, os.PathLike)):
        source = str(rows)
        rows = read_jsonl(rows)
    else:
        source = "the rows given"
    dataset = rows if isinstance(rows, Dataset) else Dataset.from_list(list(rows))
    if len(dataset) == 0:
        raise SynthtuneError(f"no rows to export in {source}; loosen curation or make more rows")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dataset.save_to_disk(str(folder / DATASET_DIR))
    dataset.to_parquet(str(folder / PARQUET))
    return dataset

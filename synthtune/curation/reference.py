"""The reference set a data step compares against (decontamination, MAUVE, novelty): its texts, never empty."""

from __future__ import annotations

from pathlib import Path

from synthtune.curation.cluster_select import field_texts
from synthtune.errors import SynthtuneError
from synthtune.records import read_table, require_fields


def reference_texts(path: str | Path, field: str, strict: bool) -> list[str]:
    """The ``field`` texts of a non-empty reference set: a rows file, ``save_to_disk`` folder or dataset name
    (:func:`synthtune.records.read_table`)."""
    rows, _ = read_table(path, strict=strict)
    if not rows:
        raise SynthtuneError(f"{path}: the reference file has no rows; pass a non-empty reference set")
    require_fields(rows, [field], str(path))
    return field_texts(rows, field, str(path))

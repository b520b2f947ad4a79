"""What the data steps share: their input rows (a file, or rows given in memory), their kept rows as a
``datasets.Dataset``, naming their reports, refusing an output that is an input."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from synthtune.curation.reference import reference_texts  # noqa: F401 (the data steps import it from here)
from synthtune.errors import SynthtuneError
from synthtune.records import is_saved_dataset, read_table, require_fields

#: Input rows of a data step: a rows file, a ``datasets.Dataset`` or a list of dicts. A command's ``--help``
#: shows such a parameter as a path (``str``).
Rows = Union[str, os.PathLike, "datasets.Dataset", Sequence[Mapping[str, Any]]]  # noqa: F821
GIVEN = "the rows given"


def is_path(source: Any) -> bool:
    """Whether ``source`` names a file (or folder, or dataset name) rather than holding rows."""
    return isinstance(source, (str, os.PathLike))


def source_name(source: Any) -> Optional[str]:
    """How reports and messages name ``source``: its path, or "the rows given"."""
    return None if source is None else str(source) if is_path(source) else GIVEN


def given_rows(source: Any, what: str = "input") -> list[dict[str, Any]]:
    """Rows held in memory (a ``datasets.Dataset``, or a list of dicts) as a list of dicts."""
    rows = source.to_list() if hasattr(source, "to_list") and hasattr(source, "column_names") else source
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise SynthtuneError(f"{what} takes a rows file, a datasets.Dataset or a list of dicts, got "
                             f"{type(source).__name__}")
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, Mapping)), None)
    if bad is not None:
        raise SynthtuneError(f"{what}: row {bad} is a {type(rows[bad]).__name__}, not a dict of fields; "
                             "pass a list of dicts")
    return [dict(row) for row in rows]


def rows_dataset(source: Rows) -> "datasets.Dataset":  # noqa: F821
    """``source`` as a ``datasets.Dataset`` (a file is read, rows given are converted)."""
    from datasets import Dataset

    if isinstance(source, Dataset):
        return source
    return Dataset.from_list(read_table(source)[0] if is_path(source) else given_rows(source))


class Result(dict):
    """A data step's JSON report (a dict, as ``<output>.report.json`` holds it), with the rows it kept as
    ``result.rows``, a ``datasets.Dataset`` (read from ``output`` when they went to a file only)."""

    def __init__(self, report: Mapping[str, Any], kept: Optional[list[dict[str, Any]]] = None,
                 output: Optional[Union[str, Path]] = None) -> None:
        super().__init__(report)
        self._kept, self._output = kept, output

    @property
    def rows(self) -> "datasets.Dataset":  # noqa: F821
        """The kept rows."""
        from datasets import Dataset

        if self._kept is not None:
            return Dataset.from_list(self._kept)
        return rows_dataset(self._output)


def report_path(output: str | Path) -> Path:
    """Where the JSON report of ``output`` goes: ``<output>.report.json``."""
    output = Path(output)
    return output.with_name(output.name + ".report.json")


def read_rows(source: Rows, strict: bool) -> tuple[list[dict[str, Any]], int]:
    """Rows of a rows file, ``save_to_disk`` folder or dataset name (:func:`synthtune.records.read_table`) and
    how many broken JSONL lines it skipped (a line that is not valid UTF-8 among them); rows given in memory as
    they are (none broken)."""
    if not is_path(source):
        return given_rows(source), 0
    rows, broken = read_table(source, strict=strict)
    return rows, len(broken)


def read_input(source: Rows, field: str, strict: bool, verb: str) -> tuple[list[dict[str, Any]], int]:
    """Rows of a command's input (at least one, each with ``field``) and the number of broken lines."""
    rows, broken = read_rows(source, strict)
    if not rows:
        raise SynthtuneError(f"{source_name(source)}: no rows to {verb}; check the input")
    require_fields(rows, [field], source_name(source))
    return rows, broken


def check_distinct(output: Optional[Path], *inputs: Any) -> None:
    """Refuse an output path that is also one of the inputs (it would be overwritten)."""
    for other in inputs:
        if output is not None and is_path(other) and Path(other).resolve() == output.resolve():
            raise SynthtuneError(f"--output {output} is also an input; write to a different file")


def reference_rows_texts(source: Rows, field: str, strict: bool) -> list[str]:
    """The ``field`` texts of a non-empty reference set: a file, or rows given in memory."""
    if is_path(source):
        return reference_texts(source, field, strict)
    from synthtune.curation.cluster_select import field_texts

    rows = given_rows(source, "reference")
    if not rows:
        raise SynthtuneError("the reference rows given are empty; pass a non-empty reference set")
    require_fields(rows, [field], GIVEN)
    return field_texts(rows, field, GIVEN)


def on_disk_only(source: Any, output: Optional[str], streaming: Optional[bool], executor: Optional[str] = None) -> bool:
    """Whether the streaming path applies (:func:`use_scaled_path`); rows given in memory, or no ``output``,
    run in memory, and asking them to stream is one line."""
    from synthtune.curation.streaming_command import use_scaled_path

    if is_path(source) and output is not None and streamable(source):
        return use_scaled_path(source, streaming, executor)
    if streaming or executor:
        raise SynthtuneError(f"the streaming path reads JSONL or Parquet files into an output, not {source_name(source)}"
                             "; pass such a file and an output, or drop streaming/executor")
    return False


def streamable(source: Any) -> bool:
    """Whether the streaming path can read ``source``: JSONL or Parquet files, folders or globs of them (not a
    CSV, a ``save_to_disk`` folder or a dataset name, which are read in memory)."""
    text = str(source)
    if "," in text or glob.has_magic(text):
        return True
    path = Path(text).expanduser()
    if is_saved_dataset(path):
        return False
    return path.is_dir() or path.name.lower().endswith((".jsonl", ".json", ".jsonl.gz", ".parquet", ".pq"))


def write_kept(output: Optional[str], kept: list[dict[str, Any]], report: dict[str, Any]) -> Result:
    """Write the kept rows to ``output`` and the report beside it (nothing without ``output``); the result."""
    from synthtune.paths import atomic_write_json, atomic_write_jsonl

    if output is not None:
        atomic_write_jsonl(Path(output), kept)
        atomic_write_json(report_path(output), report)
    return Result(report, kept=kept)

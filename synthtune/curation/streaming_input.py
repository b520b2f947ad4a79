"""Sharded curation input as independent units of work (JSONL byte ranges, Parquet row groups).

A *unit* is a piece of one input file that one process reads on its own: a byte range of a JSONL
file that starts at a line start, or one row group of a Parquet file. The units of an input, in
file order and then position order, enumerate its rows in input order, so results computed per
unit and concatenated in unit order are in input order too. The streaming curation and the
datatrove engine both work unit by unit.

Rows follow :func:`synthtune.records.read_jsonl`: broken lines (not UTF-8, not JSON, not an
object) are skipped and counted, or raise under ``strict``; blank lines are ignored; a byte order
mark at the start of a file is not part of its first row.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from synthtune.errors import SynthtuneError

DEFAULT_UNIT_BYTES = 32 * 2**20
PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz")


@dataclass(frozen=True)
class Unit:
    """One piece of an input file that a process reads on its own.

    Args:
        path: the file.
        kind: ``"jsonl"`` or ``"parquet"``.
        start: first byte (JSONL, at a line start) or row group index (Parquet).
        end: byte just past the range (JSONL) or row group index + 1 (Parquet).
    """

    path: str
    kind: str
    start: int
    end: int


@dataclass
class UnitRows:
    """The rows of a unit that parsed, with where they came from.

    Args:
        texts: the ``field`` text of every parsed row, in order.
        offsets: byte offset of every parsed row's line (JSONL) or its index in the row group (Parquet).
        broken: how many lines were skipped as broken.
        broken_offsets: byte offsets of the first broken lines (for messages).
    """

    texts: list[str]
    offsets: np.ndarray
    broken: int = 0
    broken_offsets: tuple[int, ...] = ()


def input_files(spec: str | os.PathLike | list[str]) -> list[Path]:
    """The files an input names: one file, a folder (its ``*.jsonl``/``*.parquet`` files), a glob, or a
    comma-separated list of those, sorted within each item.

    Args:
        spec: the ``--input`` value.
    """
    items = spec if isinstance(spec, list) else [s for s in str(spec).split(",") if s.strip()]
    files: list[Path] = []
    for item in items:
        path = Path(str(item).strip()).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES))
            if not found:
                raise SynthtuneError(f"{path}: the folder holds no .jsonl or .parquet files; pass a folder of shards")
            files.extend(found)
        elif glob.has_magic(str(path)):
            found = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
            if not found:
                raise SynthtuneError(f"{path}: the pattern matches no files; check the --input glob")
            files.extend(found)
        else:
            raise SynthtuneError(f"data file not found: {path}; check the path")
    if not files:
        raise SynthtuneError("no input files given; pass --input FILE, a folder or a glob")
    return files


def is_sharded(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names more than one file or a Parquet file (only the streaming path reads those)."""
    files = input_files(spec)
    return len(files) > 1 or files[0].name.endswith(PARQUET_SUFFIXES)


def input_bytes(spec: str | os.PathLike) -> int:
    """Total size in bytes of the files ``spec`` names."""
    return sum(path.stat().st_size for path in input_files(spec))


def _kind(path: Path) -> str:
    if path.name.endswith(".gz"):
        raise SynthtuneError(f"{path}: compressed JSONL cannot be split into units; decompress it first")
    return "parquet" if path.name.endswith(PARQUET_SUFFIXES) else "jsonl"


def plan_units(spec: str | os.PathLike | list[str], unit_bytes: int = DEFAULT_UNIT_BYTES) -> list[Unit]:
    """Split the input into units of about ``unit_bytes`` (JSONL) or one row group each (Parquet).

    Args:
        spec: the input (see :func:`input_files`).
        unit_bytes: target size of a JSONL unit; boundaries move forward to the next line start.
    """
    units: list[Unit] = []
    for path in input_files(spec):
        if _kind(path) == "parquet":
            import pyarrow.parquet as pq

            groups = pq.ParquetFile(path).num_row_groups
            units.extend(Unit(str(path), "parquet", g, g + 1) for g in range(groups))
            continue
        size = path.stat().st_size
        cuts = [0]
        with path.open("rb") as fh:
            while cuts[-1] + unit_bytes < size:
                fh.seek(cuts[-1] + unit_bytes)
                fh.readline()  # the rest of the line the cut fell into belongs to the unit before
                position = fh.tell()
                if position >= size:
                    break
                cuts.append(position)
        cuts.append(size)
        units.extend(Unit(str(path), "jsonl", a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a)
    return units


def line_number(path: str, offset: int) -> int:
    """The 1-based line number of the line starting at byte ``offset`` of ``path``."""
    count, block = 0, 2**20
    with open(path, "rb") as fh:
        done = 0
        while done < offset:
            chunk = fh.read(min(block, offset - done))
            if not chunk:
                break
            count += chunk.count(b"\n")
            done += len(chunk)
    return count + 1


def _text_of(row: Any, field: str, path: str, offset: int) -> str:
    if field not in row:
        raise SynthtuneError(
            f"{path}: line {line_number(path, offset)} has no field {field!r}; fix the data or pass --field"
        )
    value = row[field]
    if not isinstance(value, str):
        raise SynthtuneError(
            f"{path}: line {line_number(path, offset)} field {field!r} is {type(value).__name__}, not text; "
            "fix the data or --field"
        )
    return value


def read_unit(unit: Unit, field: str, strict: bool = False) -> UnitRows:
    """The texts of a unit's rows, their offsets and its broken lines.

    Args:
        unit: the unit to read.
        field: the text field; a row without it, or with a non-text value, is an error naming the line.
        strict: raise on the first broken line instead of skipping it.
    """
    if unit.kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(unit.path).read_row_group(unit.start)
        if field not in table.column_names:
            raise SynthtuneError(f"{unit.path}: the Parquet file has no column {field!r}; pass --field")
        texts = table.column(field).to_pylist()
        for index, value in enumerate(texts):
            if not isinstance(value, str):
                raise SynthtuneError(
                    f"{unit.path}: row group {unit.start} row {index} field {field!r} is "
                    f"{type(value).__name__}, not text; fix the data or --field"
                )
        return UnitRows(texts, np.arange(len(texts), dtype=np.int64))
    texts: list[str] = []
    offsets: list[int] = []
    broken: list[int] = []
    loads = json.loads
    with open(unit.path, "rb") as fh:
        fh.seek(unit.start)
        position = unit.start
        while position < unit.end:
            raw = fh.readline()
            if not raw:
                break
            here, position = position, position + len(raw)
            try:
                line = raw.decode("utf-8-sig" if here == 0 else "utf-8")
            except UnicodeDecodeError:
                broken.append(here)
                continue
            if not line.strip():
                continue
            try:
                row = loads(line)
            except json.JSONDecodeError:
                broken.append(here)
                continue
            if not isinstance(row, dict):
                broken.append(here)
                continue
            texts.append(_text_of(row, field, unit.path, here))
            offsets.append(here)
    if broken and strict:
        raise SynthtuneError(
            f"{unit.path}: broken JSON line at line {line_number(unit.path, broken[0])}; "
            "fix or remove it, or drop --strict to skip broken lines"
        )
    return UnitRows(texts, np.asarray(offsets, dtype=np.int64), len(broken), tuple(broken[:5]))


def iter_rows_at(unit: Unit, offsets: np.ndarray) -> Iterator[dict[str, Any]]:
    """The whole rows of ``unit`` at ``offsets`` (from :func:`read_unit`), in the order given.

    Args:
        unit: the unit the offsets belong to.
        offsets: byte offsets of JSONL lines, or row indices within the Parquet row group.
    """
    if len(offsets) == 0:
        return
    if unit.kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(unit.path).read_row_group(unit.start).take(np.asarray(offsets))
        yield from table.to_pylist()
        return
    with open(unit.path, "rb") as fh:
        for offset in offsets:
            fh.seek(int(offset))
            raw = fh.readline()
            yield json.loads(raw.decode("utf-8-sig" if offset == 0 else "utf-8"))

"""Reading rows of examples from JSONL, CSV, Parquet files, ``save_to_disk`` folders or Hugging Face datasets:
:func:`read_table` is the one reader every command that reads rows goes through.

Every reader returns a list of plain dicts. Problems a user can fix (a missing file, broken JSON
lines, a field the rows lack, an empty file) raise :class:`SynthtuneError` with one line that says
what to do; broken JSONL lines are skipped with one warning that names their line numbers unless
``strict`` is set.
"""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path
from typing import Any, Iterable, Iterator

from synthtune.errors import SynthtuneError

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


def _line_list(numbers: list[int], most: int = 10) -> str:
    shown = ", ".join(str(n) for n in numbers[:most])
    return shown + (f" (+{len(numbers) - most} more)" if len(numbers) > most else "")


#: The first bytes of a gzip file (``rows.jsonl.gz``, or a compressed file without the suffix).
GZIP_MAGIC = b"\x1f\x8b"
NEWLINE = b"\n"


def _raw_bytes_lines(path: Path) -> Iterator[bytes]:
    """The lines of ``path`` as bytes, decompressed when it is a gzip file (whatever its suffix)."""
    with path.open("rb") as fh:
        compressed = fh.read(2) == GZIP_MAGIC
    if not compressed:
        with path.open("rb") as fh:
            yield from fh
        return
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as fh:
            yield from fh
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise SynthtuneError(f"{path}: a gzip file that is cut off or corrupt ({exc}); "
                             f"re-create it, or pass the uncompressed file") from None


def _json_array_rows(path: Path, text: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The objects of a file that holds one JSON array (``[{...}, {...}]``) and the 1-based positions of
    its items that are not objects."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SynthtuneError(f"{path}: starts with '[' but is not a valid JSON array ({exc.msg} at line "
                             f"{exc.lineno}); fix the file, or write one JSON object per line (JSONL)") from None
    rows = [item for item in items if isinstance(item, dict)]
    return rows, [number for number, item in enumerate(items, start=1) if not isinstance(item, dict)]


def read_jsonl_lines(path: str | Path, strict: bool = False) -> tuple[list[dict[str, Any]], list[int]]:
    """Rows of a JSONL file and the numbers of its broken lines (skipped with a warning, or one line naming
    them when ``strict``). The file may also be gzip-compressed, or hold one JSON array of objects (a
    ``.json`` export), whose items that are not objects count as broken. Each line is decoded on its own,
    so a line that is not valid UTF-8, or a truncated last line (a crash mid-write, even inside a
    multi-byte character), is just one broken line; a UTF-8 byte order mark is not part of the first row."""
    path = Path(path)
    if not path.is_file():
        raise SynthtuneError(f"data file not found: {path}; check the path")
    rows, bad, unit = [], [], "line"
    lines = _raw_bytes_lines(path)
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            bad.append(number)
            continue
        if number == 1 and line.lstrip().startswith("["):  # one JSON array, not JSON lines
            rest = b"".join(lines)
            try:
                text = line + rest.decode("utf-8")
            except UnicodeDecodeError as exc:
                where = rest.count(NEWLINE, 0, exc.start) + 2  # rest starts at line 2
                raise SynthtuneError(f"{path}: line {where} is not valid UTF-8 "
                                     f"(a JSON array is read whole); re-save the file as UTF-8") from None
            rows, bad = _json_array_rows(path, text)
            unit = "item"
            break
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if not isinstance(row, dict):
            bad.append(number)
            continue
        rows.append(row)
    if bad:
        message = f"{path}: {len(bad)} broken JSON {unit}(s) at {unit} {_line_list(bad)}"
        if strict:
            raise SynthtuneError(message + "; fix or remove them, or drop --strict to skip them")
        log.warning("%s; skipped them", message)
    return rows, bad


def read_jsonl(path: str | Path, strict: bool = False) -> list[dict[str, Any]]:
    """Rows of a JSONL file (:func:`read_jsonl_lines`, without the broken line numbers)."""
    return read_jsonl_lines(path, strict)[0]


def _read_text(path: Path) -> str:
    """The whole file as UTF-8; bytes that are not UTF-8 are one line naming the offset."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SynthtuneError(f"{path}: line {line} is not valid UTF-8 (byte {exc.start}); "
                             f"re-save the file as UTF-8") from None


def is_saved_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a folder ``datasets``' ``save_to_disk`` wrote (a Dataset or a DatasetDict)."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in ("state.json", "dataset_dict.json"))


def read_table(
    path: str | Path,
    split: str = "train",
    hf_config: str | None = None,
    strict: bool = False,
) -> tuple[list[dict[str, Any]], list[int]]:
    """The one reader of every command that reads rows: the rows of ``path`` and the numbers of the broken lines
    skipped (JSONL only; empty for the other formats).

    ``path`` is a ``.jsonl``/``.json`` file (gzip-compressed, or one JSON array, too: :func:`read_jsonl_lines`),
    a ``.csv``/``.tsv`` file (every cell text, an empty cell missing), a ``.parquet`` file, a folder
    ``save_to_disk`` wrote (its ``split`` when it holds several), or else the name of a Hugging Face dataset
    (``split``, ``hf_config``; read from the local cache when ``HF_DATASETS_OFFLINE`` is set)."""
    p = Path(str(path)).expanduser()
    suffix = p.suffix.lower()
    if suffix == ".gz" and p.with_suffix("").suffix.lower() in (".jsonl", ".json"):  # read_jsonl decompresses
        suffix = ".jsonl"
    if is_saved_dataset(p):
        return _read_saved(p, split), []
    if suffix in FILE_SUFFIXES or p.exists():
        if p.is_dir():
            raise SynthtuneError(f"{p} is a folder, not a rows file nor a datasets save_to_disk folder; pass a "
                                 f"{'/'.join(FILE_SUFFIXES)} file or the folder save_to_disk wrote")
        if not p.is_file():
            raise SynthtuneError(f"data file not found: {p}; check the path")
        if suffix not in FILE_SUFFIXES and not _looks_like_json(p):
            raise SynthtuneError(f"{p}: unsupported file type {suffix or '(no suffix)'!r}; use one of "
                                 f"{', '.join(FILE_SUFFIXES)}, or a save_to_disk folder")
        if suffix in (".jsonl", ".json") or suffix not in FILE_SUFFIXES:
            return read_jsonl_lines(p, strict=strict)
        if suffix in (".csv", ".tsv"):
            return _read_csv(p, suffix), []
        return _read_parquet(p), []
    return _read_hf(str(path), split, hf_config), []


def _looks_like_json(path: Path) -> bool:
    """Whether a file without a rows suffix holds JSON rows: gzip, or ``{``/``[`` first (after a BOM)."""
    with path.open("rb") as fh:
        head = fh.read(64)
    return head.startswith(GZIP_MAGIC) or head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")


def read_records(
    path: str | Path,
    split: str = "train",
    hf_config: str | None = None,
    strict: bool = False,
) -> list[dict[str, Any]]:
    """Rows of a file, a ``save_to_disk`` folder or a Hugging Face dataset (:func:`read_table`, without the
    broken line numbers)."""
    return read_table(path, split, hf_config, strict)[0]


def _read_csv(path: Path, suffix: str) -> list[dict[str, Any]]:
    import pandas as pd

    _read_text(path)  # one line for bytes that are not UTF-8, instead of pandas' traceback
    # Every CSV cell is text (a "5" in a stars column is the text a template inserts); only an empty
    # cell is missing, and the text check reports it instead of training on "nan".
    try:
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False,
                            na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SynthtuneError(f"{path}: not a valid {suffix[1:].upper()} file ({str(exc).splitlines()[0]}); fix "
                             "the file (quote cells holding the separator)") from None
    return [{key: (None if value != value else value) for key, value in row.items()}  # NaN (empty) -> None
            for row in frame.to_dict("records")]


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()  # plain Python values (JSON writes them), not numpy scalars
    except (pa.ArrowInvalid, OSError) as exc:
        raise SynthtuneError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]}); re-write it") from None


def _read_saved(path: Path, split: str) -> list[dict[str, Any]]:
    from datasets import Dataset, load_from_disk

    try:
        saved = load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for a damaged folder
        raise SynthtuneError(f"{path}: a save_to_disk folder that cannot be loaded ({type(exc).__name__}); "
                             "save it again") from None
    if not isinstance(saved, Dataset):  # a DatasetDict: one of its splits
        if split not in saved:
            raise SynthtuneError(f"{path} holds the splits {', '.join(saved)}, not {split!r}; pick one of them "
                                 "(split)")
        saved = saved[split]
    return saved.to_list()


def _read_hf(name: str, split: str, hf_config: str | None) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise SynthtuneError("reading a Hugging Face dataset needs `pip install datasets`") from None
    try:
        ds = datasets.load_dataset(name, hf_config, split=split)
    except Exception as exc:  # datasets raises many types for "not found / offline"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SynthtuneError(
            f"data {name!r} is neither a file (.jsonl/.csv/.parquet), a save_to_disk folder nor a loadable "
            f"Hugging Face dataset ({first}); check the path, or the dataset name while online (offline, "
            "only a dataset in the local cache loads)"
        ) from None
    return ds.to_list()


def require_fields(rows: Iterable[dict[str, Any]], fields: Iterable[str], source: str, *, text: bool = False) -> None:
    """Raise one line naming the first row that lacks one of ``fields``; with ``text``, also the first
    whose field is not a string (a ``null`` or a number would otherwise become the text "None"/"12345")."""
    fields = list(fields)
    for index, row in enumerate(rows):
        not_text = [f for f in fields if f in row and not isinstance(row[f], str)] if text else []
        if not_text:
            value = row[not_text[0]]
            raise SynthtuneError(
                f"{source}: row {index} field {not_text[0]!r} is {json.dumps(value, default=str)} "
                f"({type(value).__name__}), not text; fix the row or remove it"
            )
        missing = [f for f in fields if f not in row]
        if missing:
            have = ", ".join(sorted(row)) or "no fields"
            raise SynthtuneError(
                f"{source}: row {index} lacks field(s) {', '.join(missing)} (it has {have}); "
                f"fix the data or the template/--field"
            )


def template_fields(template: str) -> list[str]:
    """The ``{field}`` names a ``str.format`` template uses (the fields it needs from a row). A template that
    cannot fill a row's text is one line: a positional field (``{}``, ``{0}``: rows are filled by name) or a
    format spec that text does not take (``{question:d}``, ``{n:.2f}``; every field is text)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise SynthtuneError(f"text_template {template!r} is not a valid format string ({exc}); "
                             "write a literal brace as {{ or }}") from None
    names = []
    for _, name, spec, _ in parts:
        if name is None:
            continue
        field = f"{{{name}{':' + spec if spec else ''}}}"
        if name == "" or name.isdigit():
            raise SynthtuneError(f"text_template {template!r} has a positional field {field}; name the row's field "
                                 "in it, e.g. {question}, and write a literal brace as {{ or }}")
        if spec:
            try:
                format("text", spec)
            except ValueError:
                raise SynthtuneError(f"text_template {template!r}: field {field} has the format spec {spec!r}, which "
                                     f"text does not take (every field is text); drop it: {{{name}}}") from None
        names.append(name)
    return names

"""Reading rows of examples from JSONL, CSV, Parquet files or Hugging Face datasets.

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
from typing import Any, Iterable

from synthtune.errors import SynthtuneError

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


def _line_list(numbers: list[int], most: int = 10) -> str:
    shown = ", ".join(str(n) for n in numbers[:most])
    return shown + (f" (+{len(numbers) - most} more)" if len(numbers) > most else "")


def read_jsonl(path: str | Path, strict: bool = False) -> list[dict[str, Any]]:
    """Rows of a JSONL file. Broken lines (not JSON, not an object, or not valid UTF-8) are skipped
    with a warning naming their line numbers, or raise when ``strict``. Each line is decoded on its
    own, so a truncated last line (a crash mid-write, even inside a multi-byte character) is just
    one broken line."""
    path = Path(path)
    if not path.is_file():
        raise SynthtuneError(f"data file not found: {path}; check the path")
    rows, bad = [], []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                # a UTF-8 byte order mark (Windows editors write one) is not part of the first row
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                bad.append(number)
                continue
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
        message = f"{path}: {len(bad)} broken JSON line(s) at line {_line_list(bad)}"
        if strict:
            raise SynthtuneError(message + "; fix or remove them, or drop --strict to skip them")
        log.warning("%s; skipped them", message)
    return rows


def _read_text(path: Path) -> str:
    """The whole file as UTF-8; bytes that are not UTF-8 are one line naming the offset."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SynthtuneError(f"{path}: line {line} is not valid UTF-8 (byte {exc.start}); "
                             f"re-save the file as UTF-8") from None


def read_records(
    path: str | Path,
    split: str = "train",
    hf_config: str | None = None,
    strict: bool = False,
) -> list[dict[str, Any]]:
    """Rows from a ``.jsonl``/``.json``/``.csv``/``.tsv``/``.parquet`` file, or, when ``path`` has
    none of those suffixes and is not a file, from the Hugging Face dataset named ``path``."""
    p = Path(str(path)).expanduser()
    suffix = p.suffix.lower()
    if suffix in FILE_SUFFIXES or p.exists():
        if not p.is_file():
            raise SynthtuneError(f"data file not found: {p}; check the path")
        if suffix in (".jsonl", ".json"):
            text = _read_text(p) if suffix == ".json" else ""
            if text.lstrip().startswith("["):
                try:
                    rows = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise SynthtuneError(f"{p}: not valid JSON ({exc}); fix the file") from None
            else:
                rows = read_jsonl(p, strict=strict)
        elif suffix in (".csv", ".tsv"):
            import pandas as pd

            _read_text(p)  # one line for bytes that are not UTF-8, instead of pandas' traceback
            # Every CSV cell is text (a "5" in a stars column is the text a template inserts); only an empty
            # cell is missing, and the text check reports it instead of training on "nan".
            rows = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False,
                               na_values=[""]).to_dict("records")
        elif suffix == ".parquet":
            import pandas as pd

            rows = pd.read_parquet(p).to_dict("records")
        else:
            raise SynthtuneError(f"{p}: unsupported file type {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")
        return [dict(r) for r in rows]
    return _read_hf(str(path), split, hf_config)


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
            f"data {name!r} is neither a file (.jsonl/.csv/.parquet) nor a loadable Hugging Face dataset "
            f"({first}); check the path, or the dataset name while online"
        ) from None
    return [dict(r) for r in ds]


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
    """The ``{field}`` names a ``str.format`` template uses (the fields it needs from a row)."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as exc:
        raise SynthtuneError(f"text_template {template!r} is not a valid format string ({exc})") from None

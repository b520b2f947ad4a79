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
    """Rows of a JSONL file. Broken or non-object lines are skipped with a warning naming their
    line numbers, or raise when ``strict``. A truncated last line (a crash mid-write) counts as
    broken too."""
    path = Path(path)
    if not path.is_file():
        raise SynthtuneError(f"data file not found: {path}; check the path")
    rows, bad = [], []
    with path.open("r", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
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
            if suffix == ".json" and p.read_text(encoding="utf-8").lstrip().startswith("["):
                rows = json.loads(p.read_text(encoding="utf-8"))
            else:
                rows = read_jsonl(p, strict=strict)
        elif suffix in (".csv", ".tsv"):
            import pandas as pd

            rows = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",").to_dict("records")
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


def require_fields(rows: Iterable[dict[str, Any]], fields: Iterable[str], source: str) -> None:
    """Raise one line naming the first row that lacks one of ``fields``."""
    fields = list(fields)
    for index, row in enumerate(rows):
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

"""What the data steps share: reading their JSONL inputs, naming their reports, refusing an output that is an input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthtune.curation.reference import reference_texts  # noqa: F401 (the data steps import it from here)
from synthtune.errors import SynthtuneError
from synthtune.records import read_jsonl_lines, require_fields


def report_path(output: str | Path) -> Path:
    """Where the JSON report of ``output`` goes: ``<output>.report.json``."""
    output = Path(output)
    return output.with_name(output.name + ".report.json")


def read_rows(path: str | Path, strict: bool) -> tuple[list[dict[str, Any]], int]:
    """Rows of a JSONL file (gzip and a JSON array too) and how many broken lines ``read_jsonl_lines`` skipped
    (a line that is not valid UTF-8 among them)."""
    rows, broken = read_jsonl_lines(path, strict=strict)
    return rows, len(broken)


def read_input(path: str | Path, field: str, strict: bool, verb: str) -> tuple[list[dict[str, Any]], int]:
    """Rows of a command's input file (at least one, each with ``field``) and the number of broken lines."""
    rows, broken = read_rows(path, strict)
    if not rows:
        raise SynthtuneError(f"{path}: no rows to {verb}; check the input file")
    require_fields(rows, [field], str(path))
    return rows, broken


def check_distinct(output: Path, *inputs: str | Path | None) -> None:
    """Refuse an output path that is also one of the inputs (it would be overwritten)."""
    for other in inputs:
        if other is not None and Path(other).resolve() == output.resolve():
            raise SynthtuneError(f"--output {output} is also an input; write to a different file")

"""What the data commands share: printing a summary of what their function in :mod:`synthtune.api` returned.

Reading inputs and naming reports moved to :mod:`synthtune.api.files`; the old names still import from here."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Sequence

from synthtune.api.files import (check_distinct, read_input, read_rows, reference_texts,  # noqa: F401 (old paths)
                                  report_path)


def fmt(value: Any) -> str:
    """A table cell: ``-`` for None, 4 decimals for floats."""
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def print_table(title: str, rows: Sequence[tuple[str, Any]]) -> None:
    """A two-column Rich table (stage, value)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("stage")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, fmt(value))
    Console().print(table)


def command_signature(function: Callable[..., Any], required: Sequence[str] = ()) -> inspect.Signature:
    """``function``'s signature as its command takes it: a parameter of rows (``Rows``: a file, or from Python a
    dataset or a list of rows) is a path (``str``), and those in ``required`` lose their default (an ``output``
    Python may leave out is one the command line must name)."""
    parameters = []
    for parameter in inspect.signature(function).parameters.values():
        hint = str(parameter.annotation)
        if hint in ("Rows", "Optional[Rows]"):
            parameter = parameter.replace(annotation=str if hint == "Rows" else Optional[str])
        if parameter.name in required:
            parameter = parameter.replace(annotation=str, default=inspect.Parameter.empty)
        parameters.append(parameter)
    return inspect.signature(function).replace(parameters=parameters)


def printed(function: Callable[..., Any], show: Callable[[Any, dict[str, Any]], None],
            required: Sequence[str] = ()) -> Callable[..., Any]:
    """The command of an API ``function``: the same docstring (its ``--help``) and signature
    (:func:`command_signature`), and it prints what the function returns with ``show(result, arguments)``
    (``arguments``: every parameter's value, defaults too)."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def command(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        if result is not None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            show(result, dict(bound.arguments))
        return result

    command.__signature__ = command_signature(function, required)
    command.__annotations__ = {**function.__annotations__, **{name: parameter.annotation for name, parameter in
                                                              command.__signature__.parameters.items()}}
    return command

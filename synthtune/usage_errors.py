"""Command-line usage errors as one line: an unknown option names the closest known one."""

from __future__ import annotations

import difflib
import re
from typing import NoReturn

from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser

from synthtune.errors import SynthtuneError


class SynthtuneArgumentParser(LightningArgumentParser):
    """The CLI's parser: a bad option is one line (``error: model.init_args: unknown option
    'prompt_lenght' (did you mean 'prompt_length'?); ...``) instead of the whole usage text."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse trying alternatives internally: keep its behaviour
            super().error(message, ex)
        raise SynthtuneError(usage_error_line(message, getattr(ex, "subcommand_parser", None) or self))


def _option_names(parser: ArgumentParser, section: str) -> list[str]:
    """The option names a parser accepts directly under ``section`` (``trainer`` -> ``max_steps``, ...)."""
    prefix = f"{section}." if section else ""
    names = {action.dest[len(prefix):] for action in parser._actions if action.dest.startswith(prefix)}
    return sorted(name for name in names if name and "." not in name)


def _init_arg_names(class_path: str) -> list[str]:
    """The ``__init__`` argument names of the class ``class_path`` (for an init_args typo)."""
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls.__init__).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError):
        return []
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _innermost_problem(message: str) -> str:
    """The part of a jsonargparse message that says what is wrong, on one line: for a value that
    fails a ``class_path`` (``model``), the lines nested under "Problem with given class_path"."""
    lines = message.splitlines()
    key = re.search(r'Parser key "([\w.]+)"', message)
    for i, line in enumerate(lines):
        if "Problem with given class_path" in line and key:
            depth = len(line) - len(line.lstrip())
            inner = [x.strip() for x in lines[i + 1:] if x.strip() and len(x) - len(x.lstrip()) > depth]
            return f"{key.group(1)}.init_args: " + " ".join(inner)
    return " ".join(message.split())


def usage_error_line(message: str, parser: ArgumentParser) -> str:
    """One line for a jsonargparse usage error: an unknown option names the closest known one."""
    words = (parser.prog or "").split()  # "synthtune" (or "cli.py"), or "synthtune [options] fit" for a subcommand
    subcommand = words[-1] if len(words) > 1 else ""
    how = f"run `synthtune {subcommand} --help` for the options" if subcommand else "run `synthtune --help`"
    unknown = re.search(r"Problem with given class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", message)
    section_key = re.search(r'Parser key "([\w.]+)"', message)
    if unknown and section_key:
        section, option = f"{section_key.group(1)}.init_args", unknown.group(2)
        candidates = _init_arg_names(unknown.group(1))
    else:
        unknown = re.search(r"does not accept option '([\w.]+)'|unrecognized arguments: --([\w.]+)", message)
        if not unknown:
            return f"{_innermost_problem(message)}; {how}"
        section, _, option = (unknown.group(1) or unknown.group(2)).rpartition(".")
        candidates = _option_names(parser, section)
    close = difflib.get_close_matches(option, candidates, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{section or subcommand}: unknown option {option!r}{hint}; fix the key in the config or command line, or {how}"

"""Command-line usage errors as one line: an unknown option names the closest known one."""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.cli import LightningArgumentParser

from synthtune.errors import SynthtuneError


#: The arguments the last top-level parse was given (to name a config file jsonargparse calls "<unicode string>").
_given_args: list[str] = []


class NamedConfigErrors:
    """Mixin of a jsonargparse parser: a ``--config`` file that is not valid YAML is one line naming the file,
    the line and the fix (jsonargparse names it ``"<unicode string>"``)."""

    def parse_args(self, args=None, *rest, **kwargs):
        global _given_args
        _given_args = [str(a) for a in (sys.argv[1:] if args is None else args)]
        return super().parse_args(args, *rest, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if self.exit_on_error and "<unicode string>" in message:
            broken = broken_yaml_config(_given_args)
            if broken:
                raise SynthtuneError(broken)
        super().error(message, ex)


#: Model options a dumped config (``--print_config``, a run's ``config.yaml``) shows only when set: the deprecated
#: flat options, which ``synthtune.lightning_modules.flat_options`` registers here.
HIDDEN_WHEN_UNSET: set[str] = set()


def without_unset(cfg: Any) -> Any:
    """``cfg`` without the :data:`HIDDEN_WHEN_UNSET` model options that are unset (``None``); a copy when any goes."""
    keys = [f"model.init_args.{name}" for name in sorted(HIDDEN_WHEN_UNSET)]
    unset = [key for key in keys if isinstance(cfg, Namespace) and key in cfg and cfg[key] is None]
    if not unset:
        return cfg
    cfg = cfg.clone()
    for key in unset:
        del cfg[key]
    return cfg


class SynthtuneArgumentParser(NamedConfigErrors, LightningArgumentParser):
    """The parser of ``synthtune fit/validate/test/predict``: a bad option is one line (``error:
    model.init_args: unknown option 'prompt_lenght' (did you mean 'prompt_length'?); ...``) instead of the
    whole usage text; a config file that is not valid YAML is named (:class:`NamedConfigErrors`). A dumped config
    leaves out the deprecated options that are unset (:func:`without_unset`)."""

    def dump(self, cfg: Any, *args: Any, **kwargs: Any) -> str:
        return super().dump(without_unset(cfg), *args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse trying alternatives internally: keep its behaviour
            super().error(message, ex)
        broken = broken_yaml_config(_given_args) if "<unicode string>" in message else None
        raise SynthtuneError(broken or usage_error_line(message, getattr(ex, "subcommand_parser", None) or self))


class CommandArgumentParser(NamedConfigErrors, ArgumentParser):
    """The parser of the data commands (``synthtune curate``, ...): jsonargparse's, with a config file that is
    not valid YAML named in one line (:class:`NamedConfigErrors`)."""


def broken_yaml_config(args: list[str]) -> str | None:
    """One line naming the first ``--config`` file in ``args`` that is not valid YAML, where and why (a tab
    in the indentation gets its fix), or None when every one parses."""
    import yaml

    files = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    files += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    for name in files:
        path = Path(name).expanduser()
        if not path.is_file():
            continue
        try:
            yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            fix = "indent with spaces, not tabs" if "tab" in problem or "\\t" in problem else "fix the YAML there"
            return f"{path}: not valid YAML{where} ({problem}); {fix}"
    return None


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
    if "BackboneSpec" in message and "arguments are required: name" in message:  # e.g. backbone.dtype alone
        return ("model.init_args.backbone: a field of the backbone spec was set on a backbone given by name only; "
                "give its name too (--model.init_args.backbone.name smollm2-135m --model.init_args.backbone.dtype "
                f"bf16), or write backbone: {{name: ..., dtype: ...}} in the config; {how}")
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

"""``Template``: the type of every text-template option, taken verbatim from a config file or the command line.

jsonargparse reads the value of a nested command-line option (``--data.init_args.text_template VALUE``) as
YAML before it knows the option's type, so ``"Review ({stars} stars): {review_body}"`` arrives as a mapping
and is refused, and a leading ``- `` makes a list. :func:`verbatim_templates` rewrites every template option
on the command line into the form a config file gives (``--data '{"init_args": {"text_template": VALUE}}'``,
JSON-quoted), where the value is read as the string it is, exactly as in a YAML config. The options it
rewrites are the ``__init__`` arguments annotated ``Template`` of the model and data classes the command line
selects by ``class_path`` (directly or in its ``--config`` files): synthtune's or a user's own, found by type,
never from a list of synthtune's classes, so this module imports none of them.
"""

from __future__ import annotations

import importlib
import json
import typing
from pathlib import Path
from typing import Any, NewType

import yaml

#: A text template with ``str.format`` fields in braces, e.g. ``"Question: {question}\nAnswer:"``.
Template = NewType("Template", str)

#: The sections whose class arguments are given as ``--<section>.init_args.<name>`` (or ``--<section>.<name>``).
SECTIONS = ("model", "data")


def is_template(hint: typing.Any) -> bool:
    """Whether a type hint is ``Template`` or a union holding it (``Template | None``)."""
    return hint is Template or Template in typing.get_args(hint)


def template_options(cls: type) -> frozenset[str]:
    """Names of ``cls.__init__``'s arguments annotated ``Template`` (any class: synthtune's or a user's own)."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # hints that do not resolve name no template; jsonargparse reports the class itself
        return frozenset()
    return frozenset(name for name, hint in hints.items() if is_template(hint))


def _read_yaml(path: Path) -> Any:
    """A YAML file's content, or None when it cannot be read (the parser then reports it)."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None


def _section_class_path(value: Any, cwd: Path) -> str | None:
    """The class path a section's value names: ``ClassName``/``pkg.Class``, ``{class_path: ...}``, or a YAML
    file holding either."""
    if isinstance(value, dict):
        found = value.get("class_path")
        return found if isinstance(found, str) else None
    if not isinstance(value, str) or not value.strip():
        return None
    if value.endswith((".yaml", ".yml")) and (cwd / value).is_file():
        return _section_class_path(_read_yaml(cwd / value), (cwd / value).parent)
    if value.lstrip().startswith("{"):
        try:
            return _section_class_path(yaml.safe_load(value), cwd)
        except yaml.YAMLError:
            return None
    return value.strip()


def _config_class_paths(path: Path, found: dict[str, str], seen: frozenset[Path] = frozenset()) -> None:
    """Record in ``found`` the class path of each section that the config file ``path`` sets, following its own
    ``config:`` files first (relative to its folder), as jsonargparse reads them."""
    path = path.resolve()
    content = _read_yaml(path) if path not in seen else None
    if not isinstance(content, dict):
        return
    inner = content.get("config")
    for name in (inner if isinstance(inner, list) else [inner] if isinstance(inner, str) else []):
        _config_class_paths(path.parent / name, found, seen | {path})
    for section in SECTIONS:
        for value in (content.get(section), content.get(f"{section}.class_path")):
            class_path = _section_class_path(value, path.parent)
            if class_path:
                found[section] = class_path


def class_paths(argv: list[str], cwd: str | Path = ".") -> dict[str, str]:
    """``section -> class path`` of the model and data classes ``argv`` selects, directly (``--model X``,
    ``--model.class_path X``, ``--model '{class_path: X}'``) or in a ``--config`` file; the last one given wins."""
    cwd = Path(cwd)
    found: dict[str, str] = {}
    args = iter(argv)
    for arg in args:
        option, has_value, value = arg.partition("=")
        if not option.startswith("--"):
            continue
        name = option[2:]
        if name not in ("config", *SECTIONS, *(f"{s}.class_path" for s in SECTIONS)):
            continue
        if not has_value:
            value = next(args, None)
            if value is None:
                break
        if name == "config":
            _config_class_paths(cwd / value, found)
        else:
            class_path = _section_class_path(value, cwd)
            if class_path:
                found[name.removesuffix(".class_path")] = class_path
    return found


def _subclass_named(base: type, name: str) -> type | None:
    """An imported subclass of ``base`` called ``name`` (how a bare class name on the command line resolves)."""
    stack = [base]
    while stack:
        cls = stack.pop()
        if cls.__name__ == name:
            return cls
        stack += cls.__subclasses__()
    return None


def resolve_class(section: str, class_path: str) -> type | None:
    """The class ``class_path`` names (``package.module.Class``, or a bare name of an imported model or
    datamodule class), or None when nothing by that name can be imported (the parser then says so)."""
    module, _, name = class_path.rpartition(".")
    if not module:
        import lightning.pytorch as pl

        return _subclass_named(pl.LightningModule if section == "model" else pl.LightningDataModule, name)
    try:
        found = getattr(importlib.import_module(module), name, None)
    except Exception:  # not importable here: jsonargparse reports the class path in one line
        return None
    return found if isinstance(found, type) else None


def _template_option(arg: str, options: dict[str, frozenset[str]]) -> tuple[str, str] | None:
    """``(section, name)`` when ``arg`` (without ``=value``) names a template option, else None."""
    section, _, rest = arg[2:].partition(".") if arg.startswith("--") else ("", "", "")
    name = rest.removeprefix("init_args.")
    return (section, name) if name in options.get(section, ()) else None


def verbatim_templates(argv: list[str], cwd: str | Path = ".") -> list[str]:
    """``argv`` with every ``--<section>[.init_args].<template> VALUE`` (or ``=VALUE``) given as
    ``--<section> '{"init_args": {"<template>": VALUE}}'``, so that VALUE reaches the option unchanged;
    the order of the options, and every other argument, stay as they are. The template options are those of
    the classes ``argv`` selects (:func:`class_paths`, config files read relative to ``cwd``)."""
    options = {}
    for section, class_path in class_paths(argv, cwd).items():
        cls = resolve_class(section, class_path)
        options[section] = template_options(cls) if cls is not None else frozenset()
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        option, has_value, value = arg.partition("=")
        found = _template_option(option, options)
        if found is None:
            out.append(arg)
            continue
        if not has_value:
            value = next(args, None)
            if value is None:  # argparse reports the missing value
                out.append(arg)
                continue
        section, name = found
        out += [f"--{section}", json.dumps({"init_args": {name: value}})]
    return out


def field_text(value: Any) -> str | None:
    """A row's value as the text a template inserts: text as it is, a whole number as its digits (``5``, also
    ``5.0``, as a CSV or Parquet column with gaps holds it), any other number as Python writes it, a boolean as
    ``true``/``false``; None for a value that is no text (missing, null, NaN, a list, a mapping)."""
    import numbers

    if isinstance(value, str):
        return value
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy's boolean too
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            return None
        return str(int(number)) if number.is_integer() else repr(number)
    return None


def fill_template(template: str, rows: list[dict[str, Any]], source: str) -> list[str]:
    """``template`` filled with each row, numbers and booleans written as text (:func:`field_text`); a field a
    row lacks, or one that holds no text (null, a list), is a one-line error naming the row."""
    from synthtune.errors import SynthtuneError
    from synthtune.records import require_fields, template_fields

    fields = template_fields(template)
    require_fields(rows, fields, source)
    filled = []
    for index, row in enumerate(rows):
        texts = {field: field_text(row[field]) for field in fields}
        bad = next((field for field, text in texts.items() if text is None), None)
        if bad is not None:
            value = row[bad]
            raise SynthtuneError(f"{source}: row {index} field {bad!r} is {json.dumps(value, default=str)} "
                                 f"({type(value).__name__}), not text or a number; fix the row or remove it")
        filled.append(template.format(**{**row, **texts}))
    return filled

"""``Template``: the type of every text-template option, taken verbatim from a config file or the command line.

jsonargparse reads the value of a nested command-line option (``--data.init_args.text_template VALUE``) as
YAML before it knows the option's type, so ``"Review ({stars} stars): {review_body}"`` arrives as a mapping
and is refused, and a leading ``- `` makes a list. :func:`verbatim_templates` rewrites every template option
on the command line into the form a config file gives (``--data '{"init_args": {"text_template": VALUE}}'``,
JSON-quoted), where the value is read as the string it is, exactly as in a YAML config. The options it
rewrites are the ``__init__`` arguments annotated ``Template`` in :mod:`synthtune.lightning_modules` and
:mod:`synthtune.datamodules`.
"""

from __future__ import annotations

import json
import typing
from functools import cache
from typing import NewType

#: A text template with ``str.format`` fields in braces, e.g. ``"Question: {question}\nAnswer:"``.
Template = NewType("Template", str)

#: The sections whose class arguments are given as ``--<section>.init_args.<name>`` (or ``--<section>.<name>``).
SECTIONS = ("model", "data")


def is_template(hint: typing.Any) -> bool:
    """Whether a type hint is ``Template`` or a union holding it (``Template | None``)."""
    return hint is Template or Template in typing.get_args(hint)


@cache
def template_options() -> frozenset[str]:
    """Names of the ``__init__`` arguments annotated ``Template`` in synthtune's models and datamodules."""
    from synthtune import datamodules, lightning_modules

    names = set()
    for package in (lightning_modules, datamodules):
        for cls in (getattr(package, name) for name in package.__all__):
            hints = typing.get_type_hints(cls.__init__)
            names.update(name for name, hint in hints.items() if is_template(hint))
    return frozenset(names)


def _template_option(arg: str) -> tuple[str, str] | None:
    """``(section, name)`` when ``arg`` (without ``=value``) names a template option, else None."""
    section, _, rest = arg[2:].partition(".") if arg.startswith("--") else ("", "", "")
    name = rest.removeprefix("init_args.")
    return (section, name) if section in SECTIONS and name in template_options() else None


def verbatim_templates(argv: list[str]) -> list[str]:
    """``argv`` with every ``--<section>[.init_args].<template> VALUE`` (or ``=VALUE``) given as
    ``--<section> '{"init_args": {"<template>": VALUE}}'``, so that VALUE reaches the option unchanged;
    the order of the options, and every other argument, stay as they are."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        option, has_value, value = arg.partition("=")
        found = _template_option(option)
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

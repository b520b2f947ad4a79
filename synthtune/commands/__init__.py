"""Every ``synthtune`` command that is not a Lightning run, each a typed function run through jsonargparse.

A command is a plain function with typed arguments and an ``Args:`` docstring (its ``--help``).
:func:`run_command` builds its parser, so ``--config file.yaml`` and ``--print_config`` work as they do
for ``synthtune fit``, parses the arguments and calls it. A ``bool`` option may be given bare
(``--strict`` means ``--strict true``); a command with an ``extra`` list parameter (``sweep``) also
receives whatever follows ``--`` on the command line.
"""

from __future__ import annotations

import inspect
import sys
import typing
from typing import Any, Callable, Union

from jsonargparse import ActionConfigFile, ArgumentParser

from synthtune.commands.curate import curate
from synthtune.commands.decontaminate import decontaminate
from synthtune.commands.export_prompt import export_prompt
from synthtune.commands.filter import filter_rows
from synthtune.commands.pipeline import pipeline
from synthtune.commands.score import mauve, novelty
from synthtune.commands.sweep import sweep
from synthtune.commands.synalign import evaluate, select
from synthtune.errors import SynthtuneError
from synthtune.preflight import claimed_outputs
from synthtune.usage_errors import CommandArgumentParser

Command = Callable[..., Any]

#: ``synthtune <name>`` -> its function, or -> {subcommand: function} for ``synthtune <name> <subcommand>``.
COMMANDS: dict[str, Union[Command, dict[str, Command]]] = {
    "curate": curate,
    "decontaminate": decontaminate,
    "export-prompt": export_prompt,
    "filter": filter_rows,
    "pipeline": pipeline,
    "score": {"mauve": mauve, "novelty": novelty},
    "synalign": {"select": select, "evaluate": evaluate},
    "sweep": sweep,
}
EXTRA = "extra"


def summary(function: Command) -> str:
    """The first line of a command's docstring (its one-line description)."""
    return (inspect.getdoc(function) or "").split("\n")[0]


def command_lines() -> list[tuple[str, str]]:
    """``(usage name, one-line description)`` of every command, subcommands spelled out (for ``synthtune --help``)."""
    lines = []
    for name, target in COMMANDS.items():
        for sub, function in (target.items() if isinstance(target, dict) else [("", target)]):
            lines.append((f"{name} {sub}".strip(), summary(function)))
    return lines


def function_parser(function: Command, prog: str) -> ArgumentParser:
    """A jsonargparse parser of ``function``'s typed arguments, with ``--config`` and ``--print_config``."""
    doc = inspect.getdoc(function) or ""
    parser = CommandArgumentParser(prog=prog, description=doc.split("\n\nArgs:")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")
    parser.add_function_arguments(function, as_group=False)
    hints = typing.get_type_hints(function)
    for action in parser._actions:
        if hints.get(action.dest) is bool:  # a bare flag means true, as in argparse's store_true
            action.nargs, action.const = "?", True
    return parser


def build_parser(name: str) -> ArgumentParser:
    """The parser of ``synthtune <name>`` (with one subcommand per function for grouped commands)."""
    target = COMMANDS[name]
    if not isinstance(target, dict):
        return function_parser(target, f"synthtune {name}")
    module_doc = sys.modules[next(iter(target.values())).__module__].__doc__ or ""
    parser = CommandArgumentParser(prog=f"synthtune {name}", description=module_doc.split("\n")[0])
    subcommands = parser.add_subcommands(required=True, dest="subcommand")
    for sub, function in target.items():
        subcommands.add_subcommand(sub, function_parser(function, f"synthtune {name} {sub}"), help=summary(function))
    return parser


def run_command(name: str, argv: list[str]) -> Any:
    """Parse ``argv`` for ``synthtune <name>`` and run the command; returns what it returns (its report)."""
    argv = list(argv)
    tail: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, tail = argv[:cut], argv[cut + 1:]
    config = build_parser(name).parse_args(argv)
    function = COMMANDS[name]
    if isinstance(function, dict):
        function, config = function[config.subcommand], config[config.subcommand]
    parameters = inspect.signature(function).parameters
    kwargs = {key: value for key, value in config.as_dict().items() if key in parameters}
    if tail:
        if EXTRA not in parameters:
            raise SynthtuneError(f"`synthtune {name}` takes no arguments after --; remove `-- {' '.join(tail)}`")
        kwargs[EXTRA] = [*kwargs.get(EXTRA, []), *tail]
    with claimed_outputs(function, kwargs):  # every output checked and locked before any work
        return function(**kwargs)

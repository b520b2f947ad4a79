#!/usr/bin/env python3
"""Find tests that cannot fail (CI runs this before pytest; see scripts/test.sh).

A test should assert something a bug would change. This reads every ``test_*.py`` under the given
folders (default ``tests/``) with :mod:`ast` and reports, as ``file:line: reason``:

* ``assert True`` (any constant that is always true);
* ``assert all(...)`` over an iterable that no assertion of the same test shows to be non-empty
  (``all([])`` is true), e.g. without ``len(rows) == 3``, ``[r["id"] for r in rows] == [0, 1]`` or
  ``rows`` asserted on its own (literals with elements, ``range(k)`` and a loaded model's
  ``.parameters()``/``.state_dict()`` count as non-empty);
* range-only metric checks: an assertion that is only ``0 <= x <= 1`` (or ``<``) chains, alone,
  joined by ``and`` (also with sign checks such as ``x > 0``) or inside ``all(...)``, unless another
  assertion of the test equates each bounded expression with a value; a metric of 0.0 from a broken
  model passes them;
* ``assert x is not None`` as a test's only check;
* tests with no check at all: no ``assert``, no ``pytest.raises``/``pytest.warns``, no ``assert*``
  call (``torch.testing.assert_close``, ...) and no call of a helper (any function under the checked
  folders) that itself checks.

A line that is meaningful as written can be exempted with a comment ``# check_tests: ok <reason>``
on it (for a test without checks: on its ``def`` line). Exit status: 0 when nothing is found, 1 with
the findings listed on stdout.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import re
import sys
from dataclasses import dataclass
from pathlib import Path

EXEMPT = re.compile(r"#\s*check_tests:\s*ok\b(.*)$")
RAISES = {"raises", "warns", "deprecated_call"}  # pytest context managers that fail when nothing happens


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def _call_name(node: ast.AST) -> str | None:
    """``f`` for ``f(...)`` and ``a.b.f(...)``; None for anything else."""
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute):
            return func.attr
    return None


def _is_unit_range(node: ast.AST) -> bool:
    """``0 <= x <= 1`` / ``0 < x < 1`` (bounds the constants 0 and 1)."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 2
            and all(isinstance(op, (ast.Lt, ast.LtE)) for op in node.ops)):
        return False
    low, high = node.left, node.comparators[1]
    return (isinstance(low, ast.Constant) and low.value == 0 and not isinstance(low.value, bool)
            and isinstance(high, ast.Constant) and high.value == 1 and not isinstance(high.value, bool))


def _conjuncts(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        return [part for value in node.values for part in _conjuncts(value)]
    return [node]


def _is_sign_check(node: ast.AST) -> bool:
    """``x > 0`` / ``x >= 0`` / ``0 < x``: says nothing about the value beyond its sign."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
        return False
    zero = [isinstance(x, ast.Constant) and x.value == 0 and not isinstance(x.value, bool)
            for x in (node.left, node.comparators[0])]
    op = node.ops[0]
    return (zero[1] and isinstance(op, (ast.Gt, ast.GtE))) or (zero[0] and isinstance(op, (ast.Lt, ast.LtE)))


def _only_range_checks(node: ast.AST) -> bool:
    """The whole assertion is unit-range checks (alone, joined by ``and``, or inside ``all(...)``),
    possibly beside sign checks (``x > 0``) that pin no value either."""
    ranges = 0
    for part in _conjuncts(node):
        if _call_name(part) == "all" and len(part.args) == 1 and isinstance(part.args[0], ast.GeneratorExp):
            if not _only_range_checks(part.args[0].elt):
                return False
            ranges += 1
        elif _is_unit_range(part):
            ranges += 1
        elif not _is_sign_check(part):
            return False
    return ranges > 0


def _ranged(node: ast.AST) -> set[str]:
    """The expressions (as source) that the unit-range checks in ``node`` bound."""
    return {ast.unparse(n.comparators[0]) for n in ast.walk(node) if _is_unit_range(n)}


def _looked_through(source: ast.AST) -> list[ast.AST]:
    """The iterables behind ``source``: ``zip``/``enumerate``/``sorted``/``list``... are looked through,
    ``x.items()``/``values()``/``keys()`` means ``x``."""
    out: list[ast.AST] = []
    todo = [source]
    while todo:
        item = todo.pop()
        name = _call_name(item)
        if name in ("zip", "enumerate", "sorted", "list", "tuple", "set", "reversed") and isinstance(item, ast.Call):
            todo.extend(item.args if name == "zip" else item.args[:1])
        elif (name in ("items", "values", "keys") and isinstance(item, ast.Call)
              and isinstance(item.func, ast.Attribute) and not item.args):
            todo.append(item.func.value)
        else:
            out.append(item)
    return out


def _iterables(node: ast.Call) -> list[ast.AST]:
    """What an ``all(...)``/``any(...)`` call iterates over (the comprehension's first source, or the argument)."""
    if len(node.args) != 1:
        return []
    arg = node.args[0]
    comprehension = isinstance(arg, (ast.GeneratorExp, ast.ListComp, ast.SetComp))
    return _looked_through(arg.generators[0].iter if comprehension else arg)


WEIGHTS = {"parameters", "named_parameters", "state_dict", "buffers"}


def _known_non_empty(node: ast.AST) -> bool:
    """A literal display with elements (also ``[a] * 3 + [b]``), ``list(range(k))``/``range(k)`` with a
    positive constant, or a pretrained model's weights (``.parameters()``/``.state_dict()``/... of an
    expression naming ``model`` or ``backbone``: a loaded language model always has them)."""
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and node.elts:
        return True
    if isinstance(node, ast.Dict) and node.keys:
        return True
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) and node.value:
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        return _known_non_empty(node.left) or _known_non_empty(node.right)
    name = _call_name(node)
    if not isinstance(node, ast.Call):
        return False
    if name in ("list", "tuple", "set") and len(node.args) == 1:
        return _known_non_empty(node.args[0])
    if name == "range":
        stop = node.args[0] if len(node.args) == 1 else None
        return isinstance(stop, ast.Constant) and isinstance(stop.value, int) and stop.value > 0
    if name in WEIGHTS and isinstance(node.func, ast.Attribute):
        return bool(re.search(r"model|backbone", ast.unparse(node.func.value)))
    return False


def _data_names(node: ast.AST, ignore: set[str]) -> set[str]:
    """Variable names read in ``node`` (module imports and builtins left out)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id not in ignore}


def _is_size(node: ast.AST) -> bool:
    """``x.shape[...]``, ``x.size(...)`` or ``x.numel()``."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
        return node.value.attr == "shape"
    return isinstance(node, ast.Call) and _call_name(node) in ("size", "numel")


def _pinned_names(assertions: list[ast.Assert], ignore: set[str]) -> set[str]:
    """Names whose size some assertion pins: inside ``len(...)`` or ``any(...)``, asserted on their own,
    on one side of an ``==`` whose other side is a non-empty literal (``[r["id"] for r in rows] == [0, 1]``,
    ``x.shape == (3, 4)``, ``Counter(...) == {0: 5}``), or a ``x.shape[0] == 8`` with a positive size."""
    pinned: set[str] = set()
    for assertion in assertions:
        for part in _conjuncts(assertion.test):
            if isinstance(part, (ast.Name, ast.Attribute, ast.Subscript)) or (
                    isinstance(part, ast.Call) and _call_name(part) in ("list", "set", "tuple", "dict")):
                pinned |= _data_names(part, ignore)
        for node in ast.walk(assertion.test):
            if isinstance(node, ast.Call) and _call_name(node) == "len" and len(node.args) == 1:
                pinned |= _data_names(node.args[0], ignore)
            if isinstance(node, ast.Call) and _call_name(node) == "any":
                for source in _iterables(node):
                    pinned |= _data_names(source, ignore)
            if isinstance(node, ast.Compare) and all(isinstance(op, ast.Eq) for op in node.ops):
                sides = [node.left, *node.comparators]
                positive = [isinstance(x, ast.Constant) and type(x.value) is int and x.value > 0 for x in sides]
                if any(_known_non_empty(side) for side in sides) or (
                        any(positive) and any(_is_size(side) for side in sides)):
                    for side in sides:
                        pinned |= _data_names(side, ignore)
    return pinned


def _comprehension_sources(test: ast.AST) -> dict[str, ast.AST]:
    """``name -> source`` for ``name = [... for x in source]`` (and ``{...}``/``dict``/``set`` forms) in a test."""
    out = {}
    for node in ast.walk(test):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp))):
            out[node.targets[0].id] = node.value.generators[0].iter
    return out


def _shown_non_empty(source: ast.AST, pinned: set[str], comprehensions: dict[str, ast.AST],
                     ignore: set[str], depth: int = 0) -> bool:
    """Whether an iterable is a non-empty literal or model weights, names a pinned variable, or is a
    variable assigned (in the test) a comprehension over such an iterable."""
    if _known_non_empty(source) or _data_names(source, ignore) & pinned:
        return True
    if isinstance(source, ast.Name) and source.id in comprehensions and depth < 5:
        return any(_shown_non_empty(s, pinned, comprehensions, ignore, depth + 1)
                   for s in _looked_through(comprehensions[source.id]))
    return False


def _is_not_none(node: ast.AST) -> bool:
    return (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.IsNot)
            and isinstance(node.comparators[0], ast.Constant) and node.comparators[0].value is None)


def _checking_calls(body: ast.AST) -> list[str]:
    """Names of calls in ``body`` that check something by themselves (``assert*``, ``pytest.raises``...)."""
    names = []
    for node in ast.walk(body):
        name = _call_name(node)
        if name and (name.startswith("assert") or name in RAISES or name == "fail"):
            names.append(name)
    return names


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level functions and methods of module-level classes."""
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(node)
        elif isinstance(node, ast.ClassDef):
            out.extend(n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return out


def checking_helpers(trees: list[ast.Module]) -> set[str]:
    """Names of functions (in any of ``trees``) that assert, directly or through another such function."""
    functions = [f for tree in trees for f in _functions(tree)]
    checking = {f.name for f in functions
                if any(isinstance(n, ast.Assert) for n in ast.walk(f)) or _checking_calls(f)}
    while True:
        more = {f.name for f in functions if f.name not in checking
                and any(_call_name(n) in checking for n in ast.walk(f))}
        if not more:
            return checking
        checking |= more


def _exemption(lines: list[str], lineno: int) -> tuple[bool, bool]:
    """(exempted, exemption lacks a reason) for a source line (1-based)."""
    match = EXEMPT.search(lines[lineno - 1]) if 0 < lineno <= len(lines) else None
    if not match:
        return False, False
    return True, not match.group(1).strip()


def _imported(tree: ast.Module) -> set[str]:
    names = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def check_tree(tree: ast.Module, lines: list[str], path: str, helpers: set[str]) -> list[Finding]:
    """Findings of one parsed test module (``helpers``: names of functions that check, see :func:`checking_helpers`)."""
    raw: list[tuple[int, str]] = []
    ignore = _imported(tree)
    for test in _functions(tree):
        if not test.name.startswith("test"):
            continue
        assertions = [n for n in ast.walk(test) if isinstance(n, ast.Assert)]
        calls = _checking_calls(test) + [n for n in (_call_name(c) for c in ast.walk(test)) if n in helpers]
        if not assertions and not calls:
            raw.append((test.lineno, f"{test.name} checks nothing (no assert, pytest.raises or asserting helper)"))
            continue
        if len(assertions) == 1 and not calls and _is_not_none(assertions[0].test):
            raw.append((assertions[0].lineno, f"{test.name}'s only check is `is not None`; assert the value"))
        pinned = _pinned_names(assertions, ignore)
        equated = {ast.unparse(side) for a in assertions for n in ast.walk(a.test)
                   if isinstance(n, ast.Compare) and all(isinstance(op, ast.Eq) for op in n.ops)
                   for side in (n.left, *n.comparators)}
        comprehensions = _comprehension_sources(test)
        for name, source in comprehensions.items():  # a pinned comprehension pins what it runs over
            if name in pinned:
                pinned |= _data_names(source, ignore)
        for assertion in assertions:
            test_expr = assertion.test
            if isinstance(test_expr, ast.Constant) and test_expr.value:
                raw.append((assertion.lineno, "`assert` of a true constant always passes"))
                continue
            if _only_range_checks(test_expr) and not _ranged(test_expr) <= equated:
                raw.append((assertion.lineno, "range-only check `0 <= x <= 1`; assert the value (recompute it)"))
                continue
            for node in ast.walk(test_expr):
                if _call_name(node) != "all" or not isinstance(node, ast.Call):
                    continue
                sources = _iterables(node)
                if sources and not any(_shown_non_empty(s, pinned, comprehensions, ignore) for s in sources):
                    shown = " / ".join(ast.unparse(s) for s in sources)
                    raw.append((assertion.lineno, f"`all(...)` over {shown}, which no assertion shows to be "
                                                  f"non-empty (all([]) is true); assert its length"))
    findings = []
    for lineno, reason in raw:
        exempt, no_reason = _exemption(lines, lineno)
        if no_reason:
            findings.append(Finding(path, lineno, "`# check_tests: ok` needs a reason after it"))
        elif not exempt:
            findings.append(Finding(path, lineno, reason))
    return findings


def check_sources(sources: dict[str, str]) -> list[Finding]:
    """Findings of test modules given as ``{path: source}`` (helpers are looked up across all of them)."""
    parsed: dict[str, ast.Module] = {}
    findings = []
    for path, source in sources.items():
        try:
            parsed[path] = ast.parse(source, filename=path)
        except SyntaxError as exc:
            findings.append(Finding(path, exc.lineno or 0, f"cannot parse: {exc.msg}"))
    helpers = checking_helpers(list(parsed.values()))
    for path, tree in parsed.items():
        if Path(path).name.startswith("test_"):
            findings.extend(check_tree(tree, sources[path].splitlines(), path, helpers))
    return sorted(findings, key=lambda f: (f.path, f.line))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Report tests that pass whatever the code does.")
    parser.add_argument("paths", nargs="*", default=["tests"], help="folders or files to check (default tests/)")
    args = parser.parse_args(argv)
    files: list[Path] = []
    for name in args.paths:
        path = Path(name)
        if not path.exists():
            print(f"error: {name} does not exist; pass test folders or files", file=sys.stderr)
            return 2
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    findings = check_sources({str(f): f.read_text(encoding="utf-8") for f in files})
    for finding in findings:
        print(finding)
    if findings:
        print(f"check_tests: {len(findings)} finding(s); make each test able to fail, or add "
              f"`# check_tests: ok <reason>` to the line", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

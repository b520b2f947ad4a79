"""Imports run one way (docs/architecture.md, "Layers"): no cycles among synthtune's modules or packages, and
no module imports a layer above its own. Module-level and function-level imports both count (a lazy import
is still a dependency); ``if TYPE_CHECKING:`` imports do not run and do not count. Importing ``a.b.c`` from
outside ``a.b`` also runs ``a/b/__init__.py``, so it counts as importing that package too.

``python tests/test_import_graph.py`` prints every cycle and upward import.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "synthtune"

#: Bottom to top. A module belongs to the layer of the longest prefix that names it; it may import its own
#: layer (without a cycle) and the layers below. Names in one entry joined by "|" are siblings: neither
#: imports the other.
LAYERS = [
    ["synthtune", "synthtune.errors", "synthtune.paths"],
    ["synthtune.records", "synthtune.tasks", "synthtune.templates", "synthtune.usage_errors", "synthtune.registry",
     "synthtune.checkpoint_io", "synthtune.preflight"],
    ["synthtune.components"],
    ["synthtune.contract"],
    ["synthtune.datamodules|synthtune.lightning_modules|synthtune.callbacks"],
    ["synthtune.lightning_cli"],
    ["synthtune.curation"],
    ["synthtune.api"],
    ["synthtune.pipeline"],
    ["synthtune.commands"],
    ["synthtune.cli"],
]

#: What components/ may import besides other components and third-party libraries: the floor only, errors (a
#: user's mistake is one line) and paths (the model/feature cache folder and atomic writes). Never the data
#: vocabulary (records, tasks: a component is handed rows, or a task object it reads through its methods), the
#: Lightning side, curation or commands.
COMPONENTS_MAY_IMPORT = ("synthtune.errors", "synthtune.paths")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def imported_names(module: str, path: Path) -> list[tuple[str, int]]:
    """``(dotted name, line)`` of every import in ``path`` that runs (module level or in a function)."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 packages
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            found.append((base, node.lineno))
            found.extend((f"{base}.{alias.name}", node.lineno) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def import_graph() -> nx.DiGraph:
    """Edges ``importer -> imported`` between synthtune modules, each with the ``lines`` of its imports."""
    known = modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for module, path in known.items():
        for name, line in imported_names(module, path):
            if name not in known:  # `from pkg import name`: name is an attribute, not a module
                continue
            # the module itself and each package above it that the importer is not already inside
            parts = name.split(".")
            targets = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
            for target in targets:
                if target in known and target != module and not module.startswith(target + "."):
                    graph.add_edge(module, target)
                    graph.edges[module, target].setdefault("lines", set()).add(line)
    return graph


def layer_of(module: str) -> tuple[int, str]:
    """``(layer index, sibling group)`` of a module: the longest prefix in LAYERS that names it."""
    best: tuple[int, int, str] | None = None
    for index, entries in enumerate(LAYERS):
        for entry in entries:
            for name in entry.split("|"):
                if (module == name or module.startswith(name + ".")) and (best is None or len(name) > best[1]):
                    best = (index, len(name), name if "|" in entry else entry)
    assert best is not None, f"{module} is in no layer; add it to LAYERS and docs/architecture.md"
    return best[0], best[2]


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def cycles(graph: nx.DiGraph) -> list[list[str]]:
    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def package_graph(graph: nx.DiGraph) -> nx.DiGraph:
    packages = nx.DiGraph()
    for a, b in graph.edges:
        if package_of(a) != package_of(b) and package_of(b) != "synthtune":
            packages.add_edge(package_of(a), package_of(b))
    return packages


def upward_imports(graph: nx.DiGraph) -> list[str]:
    """Every import of a higher layer, or of a sibling, as ``importer:line -> imported``."""
    wrong = []
    for a, b, data in graph.edges(data=True):
        (layer_a, group_a), (layer_b, group_b) = layer_of(a), layer_of(b)
        sibling = layer_a == layer_b and group_a != group_b and any("|" in e for e in LAYERS[layer_a])
        if layer_b > layer_a or sibling:
            wrong.append(f"{a}:{min(data['lines'])} -> {b}")
    return sorted(wrong)


def test_no_module_imports_another_that_imports_it_back():
    assert cycles(import_graph()) == []


def test_no_package_imports_another_that_imports_it_back():
    assert cycles(package_graph(import_graph())) == []


def test_every_import_points_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_components_depend_only_on_torch_other_components_and_the_floor():
    wrong = [f"{a} -> {b}" for a, b in import_graph().edges
             if a.startswith("synthtune.components") and not b.startswith("synthtune.components")
             and b not in COMPONENTS_MAY_IMPORT]
    assert wrong == []


def test_the_graph_sees_function_level_and_package_imports(tmp_path):
    # The checks above would pass vacuously if imports inside functions or of packages were missed.
    graph = import_graph()
    assert graph.has_edge("synthtune.pipeline.stages", "synthtune.lightning_cli")  # inside a function
    assert graph.has_edge("synthtune.cli", "synthtune.commands")  # a package's __init__
    assert graph.has_edge("synthtune.pipeline.report", "synthtune.curation")  # the package above a module


def test_an_upward_import_is_found():
    graph = import_graph()
    graph.add_edge("synthtune.components.backbone", "synthtune.lightning_cli", lines={1})
    assert upward_imports(graph) == ["synthtune.components.backbone:1 -> synthtune.lightning_cli"]
    graph.add_edge("synthtune.lightning_cli", "synthtune.components.backbone", lines={1})
    assert cycles(graph)


if __name__ == "__main__":
    graph = import_graph()
    for title, found in (("module cycles", cycles(graph)), ("package cycles", cycles(package_graph(graph))),
                         ("upward imports", upward_imports(graph))):
        print(f"{title}: {len(found)}")
        for item in found:
            print("  ", item)

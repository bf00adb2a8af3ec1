"""The package's folders show its architecture: imports only point down, no cycles, and no
private name is imported from another package of tunecb."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tunecb"

# Lowest first: a module may import its own layer and the layers below it.
LAYERS = [
    ("errors", "_version", "results", "interrupts", "wording", "escaping", "tf_notices"),
    ("study",),
    ("storage",),
    ("oracle",),
    ("tracking",),  # experiment trackers (MLflow): a parent run, a child run per trial
    ("training",),
    ("execution",),
    ("reporting",),
    ("progress",),  # what a search shows while it runs: live state, lines, JSON records
    ("launcher", "replay"),  # a search; a finished trial retrained, rerun, evaluated
    # The two front ends, side by side: the command, and search from code (tunecb.search(),
    # its live display, its result). Neither imports the other (see the test below).
    ("cli", "session"),
    ("__init__", "__main__"),  # the front door re-exports (lazily) from everywhere
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _top(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, names, line)`` of every ``tunecb`` import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "tunecb":
                for alias in node.names:
                    found.append((f"tunecb.{alias.name}", [], node.lineno))
            elif node.module.startswith("tunecb."):
                found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tunecb."):
                    found.append((alias.name, [], node.lineno))
    return found


def test_every_module_belongs_to_a_layer():
    assert {_top(p) for p in _modules()} <= set(RANK)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_and_take_no_private_names_across_packages(path):
    here = _top(path)
    for module, names, line in _imports(path):
        target = module.split(".")[1]
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        assert RANK[target] <= RANK[here], f"{where}: an import that points up"
        if target != here:
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            private_module = any(part.startswith("_") for part in module.split(".")[2:])
            assert not private, f"{where}: private names {private} from another package"
            assert not private_module or module.endswith("._base") or target == "_version", (
                f"{where}: a private module of another package"
            )


# Packages of one layer that must not import each other (siblings, not just a layer).
SIBLINGS = [("cli", "session")]


@pytest.mark.parametrize("pair", SIBLINGS, ids="-".join)
def test_the_front_ends_import_nothing_from_each_other(pair):
    for here in pair:
        for path in (PACKAGE / here).rglob("*.py"):
            for module, _, line in _imports(path):
                target = module.split(".")[1]
                assert target == here or target not in pair, (
                    f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}: "
                    f"{' and '.join(pair)} are siblings"
                )


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {}
    for path in _modules():
        name = ".".join(("tunecb", *path.relative_to(PACKAGE).with_suffix("").parts))
        name = name.removesuffix(".__init__")
        graph[name] = {m for m, _, _ in _imports(path)} - {name}
    seen: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        if seen.get(node) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*stack, node])}")
        if seen.get(node) == 2:
            return
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt in graph and not node.startswith(nxt + ".") and not nxt.startswith(node + "."):
                visit(nxt, [*stack, node])
        seen[node] = 2

    for node in sorted(graph):
        visit(node, [])


def test_no_subpackage_shadows_a_public_function_of_the_front_door():
    import importlib

    import tunecb

    for path in _modules():
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] not in ("__init__", "__main__"):
            importlib.import_module(".".join(("tunecb", *parts)))
    for name in tunecb.__all__:
        assert not isinstance(getattr(tunecb, name), type(tunecb)), f"tunecb.{name} is a module"

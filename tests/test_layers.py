"""The house stands in layers: the kernel at the bottom imports nothing of the product, the
parts above it import only downward (or beside, without cycles), the command line above
them, the demo beside the top (it runs on the command line's stack) and the benchmarks,
at the very top, are imported by nothing. Imports inside functions count too."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "q2c": 0,  # the kernel: settings, database, migrations, vocabulary
    "queries": 1,
    "sla": 1,
    "collectors": 1,
    "replay": 1,
    "alerts": 1,
    "reconcile": 1,
    "console": 2,
    "cli": 3,
    "demo": 4,  # beside the top: the sandbox, and `python -m demo` on the command line's stack
    "bench": 5,  # the very top: nothing imports it
}


def _imports() -> dict[str, set[tuple[str, str]]]:
    """Package → {(imported package, where)} for every import of another package."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in LAYERS and top != package:
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        found[package].add((top, where))
    return found


def test_no_layer_imports_a_layer_above_it_or_the_top() -> None:
    upward = [
        f"{where} imports {target}"
        for package, targets in _imports().items()
        for target, where in targets
        if LAYERS[target] > LAYERS[package]
    ]

    assert upward == []


def test_no_two_packages_depend_on_each_other() -> None:
    graph = {package: {target for target, _ in targets} for package, targets in _imports().items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
            for nxt in graph.get(start, ())
        )

    cycles = sorted(package for package in graph if reaches(package, package, {package}))

    assert cycles == []


def test_tests_share_only_their_support_and_never_the_benchmarks() -> None:
    found = []
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                module = node.module
            elif isinstance(node, ast.Import):
                module = node.names[0].name
            else:
                continue
            shared = module.startswith("tests.") and not module.startswith("tests.support")
            if shared or module.split(".")[0] == "bench":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")

    assert found == []

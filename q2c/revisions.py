"""The newest schema migration this code ships, read straight from the migration scripts.

Processes that only need to know the head (the collector's readiness check) use this
instead of loading Alembic and SQLAlchemy, which would cost each of them tens of MB.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"


def _revision_and_parent(script: Path) -> tuple[str, str | None]:
    """The `revision` and `down_revision` a migration script assigns."""
    values: dict[str, str | None] = {}
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    value = node.value.value
                    values[target.id] = None if value is None else str(value)
    return str(values["revision"]), values.get("down_revision")


@cache
def head_revision() -> str:
    """The revision no other migration builds on (the scripts form one line)."""
    graph = dict(_revision_and_parent(script) for script in VERSIONS_DIR.glob("*.py"))
    heads = set(graph) - set(graph.values())
    if len(heads) != 1:
        raise RuntimeError(f"migrations must form one line; heads found: {sorted(heads)}")
    return heads.pop()

"""Mistakes in a YAML configuration (alerts.yaml, reconcile.yaml), each named by the path of
its key (`routes[0].group_wait: invalid duration '30x' …`), all of them at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from q2c.errors import Q2CError


class InvalidConfig(Q2CError):
    """A configuration file is not valid; `problems` has one line a mistake, each naming
    its key."""

    def __init__(self, what: str, source: object, problems: list[str]) -> None:
        super().__init__(f"invalid {what} {source}:\n  " + "\n  ".join(problems))
        self.problems = problems


def read_yaml(path: Path, what: str) -> Any:
    """The parsed YAML of `path` (`what` names the file in messages: "alerts config")."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise Q2CError(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise Q2CError(f"{what} {path} is not valid YAML: {exc}") from None


class TaggedUnion(NamedTuple):
    """A mapping whose values are records told apart by their `type` (channels, sources):
    `noun` names that type in messages ("channel type"), `tags` are its values."""

    noun: str
    tags: Sequence[str]


def problems_of(exc: ValidationError, unions: Mapping[str, TaggedUnion] = {}) -> list[str]:
    """One line per mistake pydantic found, by key path. `unions` maps the key of each
    mapping of tagged records (`channels`, `sources`) to what its `type` may be."""
    return [_problem(error, unions) for error in exc.errors()]


def _problem(error: ErrorDetails, unions: Mapping[str, TaggedUnion]) -> str:
    loc = list(error["loc"])
    # A tagged record's errors carry its `type` as the union's branch, right after the
    # record's name in the mapping: not a key of the file.
    for index in range(len(loc) - 1, 1, -1):
        union = unions.get(str(loc[index - 2]))
        if union is not None and loc[index] in union.tags:
            del loc[index]
    kind, message = error["type"], error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "string_pattern_mismatch":
        message = f"{error['input']!r} may hold only letters, digits, '-', '_' and '.'"
    elif kind == "literal_error":
        message = f"{error['input']!r} is not one of {error.get('ctx', {}).get('expected')}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        union = unions.get(str(loc[-2])) if len(loc) > 1 else None
        noun, tags = union or TaggedUnion("type", ())
        loc.append("type")
        given = error.get("ctx", {}).get("tag")
        what = f"unknown {noun} {given!r}" if given else "required key is missing"
        message = f"{what} (use {', '.join(tags)})"
    return f"{key_path(loc)}: {message}"


def key_path(loc: Sequence[int | str]) -> str:
    """`routes[0].group_wait` for pydantic's ('routes', 0, 'group_wait')."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":  # the mapping's key itself is at fault: the path already says it
            continue
        else:
            path += f".{part}" if path else part
    return path or "(top level)"

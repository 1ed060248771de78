"""Reading alerts.yaml: every mistake is reported by the path of its key
(`routes[0].group_wait: invalid duration '30x' …`), all of them at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from alerts.config import CHANNEL_TYPES, AlertsConfig
from q2c.errors import Q2CError

DEFAULT_CONFIG_FILE = Path(__file__).with_name("alerts.yaml")


class InvalidAlertsConfig(Q2CError):
    """alerts.yaml is not valid; `problems` has one line a mistake, each naming its key."""

    def __init__(self, source: object, problems: list[str]) -> None:
        super().__init__(f"invalid alerts config {source}:\n  " + "\n  ".join(problems))
        self.problems = problems


def load_alerts_config(path: Path | None = None) -> AlertsConfig:
    """Read and validate alerts.yaml (the shipped example when `path` is None)."""
    source = path or DEFAULT_CONFIG_FILE
    try:
        data = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise Q2CError(f"cannot read alerts config {source}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise Q2CError(f"alerts config {source} is not valid YAML: {exc}") from None
    return parse_alerts_config(data, source)


def parse_alerts_config(data: Any, source: object = "alerts.yaml") -> AlertsConfig:
    """The config that `data` (parsed YAML) describes; InvalidAlertsConfig listing every
    mistake at once when it is not valid."""
    if data is None:
        data = {}  # an empty file configures nothing, which is valid
    if not isinstance(data, dict):
        raise InvalidAlertsConfig(source, ["(top level): expected a mapping (channels, routes, …)"])
    try:
        config = AlertsConfig.model_validate(data)
    except ValidationError as exc:
        raise InvalidAlertsConfig(source, [_problem(error) for error in exc.errors()]) from None
    problems = _reference_problems(config)
    if problems:
        raise InvalidAlertsConfig(source, problems)
    return config


def _problem(error: ErrorDetails) -> str:
    loc = list(error["loc"])
    # A channel's errors carry its `type` as the tagged union's branch: not a key.
    if len(loc) > 2 and loc[0] == "channels" and loc[2] in CHANNEL_TYPES:
        del loc[2]
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
        loc.append("type")
        given = error.get("ctx", {}).get("tag")
        what = f"unknown channel type {given!r}" if given else "required key is missing"
        message = f"{what} (use {', '.join(CHANNEL_TYPES)})"
    return f"{key_path(loc)}: {message}"


def key_path(loc: list[int | str]) -> str:
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


def _reference_problems(config: AlertsConfig) -> list[str]:
    """Channels named in `to:` that are not configured; names given twice."""
    problems = []
    targets = [
        *((f"routes[{i}]", route.to) for i, route in enumerate(config.routes)),
        *((f"escalations[{i}]", step.to) for i, step in enumerate(config.escalations)),
        *((f"digests[{i}]", digest.to) for i, digest in enumerate(config.digests)),
    ]
    known = ", ".join(config.channels) or "none are configured"
    for where, channels in targets:
        for position, channel in enumerate(channels):
            if channel not in config.channels:
                problems.append(
                    f"{where}.to[{position}]: unknown channel {channel!r} (channels: {known})"
                )
    for section, named in (("digests", config.digests), ("maintenance", config.maintenance)):
        names = [entry.name for entry in named]
        for index, name in enumerate(names):
            if name in names[:index]:
                problems.append(f"{section}[{index}].name: {name!r} is used twice")
    return problems

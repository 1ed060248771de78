"""Reading alerts.yaml: every mistake is reported by the path of its key
(`routes[0].group_wait: invalid duration '30x' …`), all of them at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alerts.config import CHANNEL_TYPES, AlertsConfig
from q2c.config_errors import InvalidConfig, TaggedUnion, problems_of, read_yaml

DEFAULT_CONFIG_FILE = Path(__file__).with_name("alerts.yaml")
_UNIONS = {"channels": TaggedUnion("channel type", CHANNEL_TYPES)}


class InvalidAlertsConfig(InvalidConfig):
    """alerts.yaml is not valid; `problems` has one line a mistake, each naming its key."""

    def __init__(self, source: object, problems: list[str]) -> None:
        super().__init__("alerts config", source, problems)


def load_alerts_config(path: Path | None = None) -> AlertsConfig:
    """Read and validate alerts.yaml (the shipped example when `path` is None)."""
    source = path or DEFAULT_CONFIG_FILE
    return parse_alerts_config(read_yaml(source, "alerts config"), source)


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
        raise InvalidAlertsConfig(source, problems_of(exc, _UNIONS)) from None
    problems = _reference_problems(config)
    if problems:
        raise InvalidAlertsConfig(source, problems)
    return config


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

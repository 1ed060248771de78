"""Durations as the configuration files write them (90s, 15m, 4h, 3d): read, and spelled
back the same way wherever a duration is shown (a stall's message, the CLI, the console)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """A duration such as 90s, 15m, 4h or 3d."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(str(value))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"invalid duration {value!r} (use e.g. 90s, 15m, 4h, 3d)")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def duration_text(value: timedelta) -> str:
    """`value` as parse_duration reads it, in the largest unit that says it whole: 30s, 5m,
    4h, 3d (90s stays 90s)."""
    seconds = value.total_seconds()
    for unit, size in sorted(_UNIT_SECONDS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

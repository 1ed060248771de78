"""What an event is, as routes, silences and maintenance windows see it: its labels (the
event type, the correlation ID and the facts it carries), and whether a `match:` holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alerts.config import ExceptionMatch

Labels = dict[str, Any]


def event_labels(event_type: str, correlation_id: str | None, facts: Mapping[str, Any]) -> Labels:
    """The event's labels: its facts that are single values (not an SLO's burn rates),
    with `event` and `correlation_id` beside them."""
    labels = {
        key: value for key, value in facts.items() if isinstance(value, str | int | float | bool)
    }
    labels["event"] = event_type
    if correlation_id is not None:
        labels["correlation_id"] = correlation_id
    return labels


def matches(match: ExceptionMatch, labels: Mapping[str, Any]) -> bool:
    """Whether every condition of `match` holds for `labels`: a label one of the listed
    values, compared as text (a missing label holds for none)."""
    for key, allowed in match:
        if allowed is None:
            continue
        value = labels.get(key)
        if value is None or str(value) not in allowed:
            return False
    return True


def common_labels(first: Mapping[str, Any], second: Mapping[str, Any]) -> Labels:
    """The labels both hold with the same value: what a group's events have in common."""
    return {key: value for key, value in first.items() if key in second and second[key] == value}

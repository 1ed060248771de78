"""What keeps a notification from being sent: a person's silence or a recurring maintenance
window of alerts.yaml, matched against the labels of the notification's group. Only the
notification is suppressed: the exceptions are opened, assigned and escalated as ever."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

import psycopg

from alerts.config import AlertsConfig, EventMatch, Maintenance
from alerts.matching import matches
from alerts.silences import SilenceMatch
from q2c.cron import next_run

_CURRENT_SILENCES = """
SELECT id, matchers, reason, author, ends_at FROM alert_silences
WHERE starts_at <= %(now)s AND least(ends_at, expired_at) > %(now)s
ORDER BY id
"""


@dataclass(frozen=True)
class _Rule:
    """A silence or a window in force: what it matches, and how the log names it."""

    match: EventMatch
    name: str


def window_start(window: Maintenance, zone: tzinfo, now: datetime) -> datetime | None:
    """When the occurrence of `window` that `now` falls in began (its schedule's fire
    time, in force for `duration` after), or None when `now` is outside every one."""
    start = next_run(window.schedule, zone, now - window.duration)
    if start + window.duration <= now:  # that one ended right at `now`: the next one
        start = next_run(window.schedule, zone, start + timedelta(seconds=1))
    return start if start <= now else None


class Suppressor:
    """The silences and maintenance windows in force at one moment."""

    def __init__(self, rules: Sequence[_Rule]) -> None:
        self._rules = rules

    @classmethod
    def at(cls, conn: psycopg.Connection, config: AlertsConfig, now: datetime) -> Suppressor:
        """The silences (read on `conn`) and windows in force at `now`."""
        rules = [
            _Rule(
                SilenceMatch.model_validate(row[1]),
                f"silence {row[0]} by {row[3]} until {row[4]:%Y-%m-%d %H:%M %Z}: {row[2]}",
            )
            for row in conn.execute(_CURRENT_SILENCES, {"now": now}).fetchall()
        ]
        for window in config.maintenance:
            start = window_start(window, config.zone, now)
            if start is not None:
                end = start + window.duration
                rules.append(
                    _Rule(
                        window.match,
                        f"maintenance window {window.name} "
                        f"({start:%Y-%m-%d %H:%M} to {end:%H:%M %Z}, '{window.schedule}')",
                    )
                )
        return cls(rules)

    def why(self, labels: Mapping[str, Any]) -> str | None:
        """The name of the first silence or window that matches `labels`, or None."""
        return next((rule.name for rule in self._rules if matches(rule.match, labels)), None)

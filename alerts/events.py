"""The words of alerting, each spelled once: the events a route matches, the attributes a
match or a group is made of, and the state a notification reports."""

from __future__ import annotations

from typing import Literal, get_args

# What happened, as routes match it (`match: {event: …}`) and as the webhook's CloudEvents
# `type` carries it, prefixed with `q2c.`.
EventType = Literal[
    "exception.opened",
    "exception.assigned",
    "exception.unassigned",
    "exception.overdue",
    "exception.regressed",
    "exception.resolved",
    "exception.auto_resolved",
    "exception.reopened",
    "slo.alert",
    "replay.failed",
    "dead_letter.created",
    "digest",
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)

# `q2c alerts test` sends this one; no route matches it.
TEST_EVENT = "test"

# What a route may group notifications by (Alertmanager's `group_by` labels).
GroupKey = Literal[
    "fingerprint", "correlation_id", "process", "stage", "system", "kind", "impact", "event"
]

# Where a notification's problem stands: PagerDuty's trigger, acknowledge and resolve.
Status = Literal["firing", "acknowledged", "resolved"]

# What a digest reports: open exceptions by impact and age (finance), or the KPIs (CIO).
DigestContent = Literal["aging", "kpis"]

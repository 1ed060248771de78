"""The router: files the outbox's unrouted events (`alert_events`, in id order) into the
notification groups of the routes they match, and marks them routed in the same
transaction, so that an event is filed once whatever crashes.

Every matching route takes the event (`continue: false` stops the search at its route).
A route's `group_by` values make one group, as Alertmanager's labels do: a new group is
due `group_wait` after it opens, a changed one at most every `group_interval` after its
last notification (alerts/flush.py decides what each due group says). A storm of
identical failures is thus one group counting them, not one notification each. An
assignment is grouped by its owner too, on every route: each owner is told their own.

Events of exceptions (and of SLOs) also make the exception a member of the group; an
event that changes a member's status (an assignment, a closing, an SLO's new state) marks
every active group holding it stale, for the flush to read its state again. A reopened
exception opens again the group that told its resolving (whatever routes match the
reopening itself), so that the incident it closed fires again under the same dedup key —
unless that route and group key have an active group by now, which it then joins.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row

from alerts.config import AlertsConfig, Route
from alerts.matching import Labels, common_labels, event_labels, matches

BATCH = 2_000  # events read and filed per transaction
# Events that change what an existing member is: its group's state is to be read again.
_STATUS_CHANGES = (
    "exception.assigned",
    "exception.unassigned",
    "exception.resolved",
    "exception.auto_resolved",
    "exception.reopened",
    "slo.alert",
)
_REOPENED = "exception.reopened"

_UNROUTED = """
SELECT a.id, a.type, a.correlation_id, a.exception_id, q2c_event_facts(a) AS facts,
       a.occurred_at
FROM alert_events a WHERE a.routed_at IS NULL ORDER BY a.id LIMIT %(limit)s
"""

# One row per group of the batch. A group still waiting for its first notification keeps
# its group_wait; one notified before is due again group_interval after that, unless it
# was due sooner anyway (its repeat).
_FILE = """
WITH batch AS (
    SELECT b.route, b.group_key::jsonb AS group_key, b.labels::jsonb AS labels, b.events,
           b.first_id, b.last_id, b.first_at, b.last_at, b.wait, b.every
    FROM unnest(%(route)s::text[], %(group_key)s::text[], %(labels)s::text[],
                %(events)s::bigint[], %(first_id)s::bigint[], %(last_id)s::bigint[],
                %(first_at)s::timestamptz[], %(last_at)s::timestamptz[],
                %(wait)s::float8[], %(every)s::float8[])
        AS b(route, group_key, labels, events, first_id, last_id, first_at, last_at, wait,
             every)
)
INSERT INTO alert_groups AS g (
    route, group_key, labels, events, unsent_events, first_event_id, last_event_id,
    first_event_at, last_event_at, created_at, stale, next_flush_at)
SELECT route, group_key, labels, events, events, first_id, last_id, first_at, last_at,
       %(now)s, true, %(now)s + make_interval(secs => wait)
FROM batch
ON CONFLICT (route, group_key) WHERE closed_at IS NULL DO UPDATE SET
    labels = (SELECT coalesce(jsonb_object_agg(l.key, l.value), '{}'::jsonb)
              FROM jsonb_each(g.labels) AS l WHERE excluded.labels -> l.key = l.value),
    events = g.events + excluded.events,
    unsent_events = g.unsent_events + excluded.events,
    last_event_id = greatest(g.last_event_id, excluded.last_event_id),
    last_event_at = greatest(g.last_event_at, excluded.last_event_at),
    stale = true,
    next_flush_at = CASE
        WHEN g.last_flushed_at IS NULL THEN g.next_flush_at
        ELSE least(g.next_flush_at, greatest(%(now)s, g.last_flushed_at + make_interval(
            secs => (SELECT b.every FROM batch b
                     WHERE b.route = g.route AND b.group_key = g.group_key))))
    END
RETURNING id, route, group_key
"""

_ADD_MEMBERS = """
INSERT INTO alert_group_members (group_id, subject, correlation_id, exception_id, process)
SELECT * FROM unnest(%(group_id)s::bigint[], %(subject)s::text[], %(correlation_id)s::text[],
                     %(exception_id)s::bigint[], %(process)s::text[])
ON CONFLICT DO NOTHING
"""

# Per route still configured and group key, the latest group holding a reopened exception:
# told resolved and closed, it is open again, due group_interval after it was told so (at
# once if that is past) — unless an active group of that route and key has opened since.
_REOPEN_GROUPS = """
WITH timing AS (
    SELECT * FROM unnest(%(routes)s::text[], %(every)s::float8[]) AS r(route, every)
), latest AS (
    SELECT DISTINCT ON (g.route, g.group_key) g.id, g.route, g.group_key, g.closed_at,
           g.told_state, g.last_flushed_at, r.every
    FROM alert_group_members m
    JOIN alert_groups g ON g.id = m.group_id
    JOIN timing r ON r.route = g.route
    WHERE m.subject = ANY(%(subjects)s)
    ORDER BY g.route, g.group_key, g.id DESC
)
UPDATE alert_groups g
SET closed_at = NULL, stale = true,
    next_flush_at = greatest(%(now)s, l.last_flushed_at + make_interval(secs => l.every))
FROM latest l
WHERE g.id = l.id AND l.closed_at IS NOT NULL AND l.told_state = 'resolved'
  AND NOT EXISTS (SELECT 1 FROM alert_groups a
                  WHERE a.route = l.route AND a.group_key = l.group_key
                    AND a.closed_at IS NULL)
"""

# A reopened exception a closed group held joins the active group of that route and key.
_JOIN_ACTIVE = """
INSERT INTO alert_group_members (group_id, subject, correlation_id, exception_id, process)
SELECT DISTINCT a.id, m.subject, m.correlation_id, m.exception_id, m.process
FROM alert_group_members m
JOIN alert_groups g ON g.id = m.group_id AND g.closed_at IS NOT NULL
JOIN alert_groups a ON a.route = g.route AND a.group_key = g.group_key
    AND a.closed_at IS NULL
WHERE m.subject = ANY(%(subjects)s)
ON CONFLICT DO NOTHING
"""

_MARK_STALE = """
UPDATE alert_groups g SET stale = true
FROM alert_group_members m
WHERE m.subject = ANY(%(subjects)s) AND g.id = m.group_id AND g.closed_at IS NULL
  AND NOT g.stale
"""

_MARK_ROUTED = "UPDATE alert_events SET routed_at = %(now)s WHERE id = ANY(%(ids)s)"


@dataclass(frozen=True)
class Member:
    """What an event is about, lastingly: an exception, or a process's SLO."""

    subject: str
    correlation_id: str | None = None
    exception_id: int | None = None
    process: str | None = None


@dataclass
class _Filing:
    """The events of one batch bound for one group."""

    route: str
    group_key: dict[str, Any]
    labels: Labels
    first_id: int
    first_at: datetime
    wait: float
    every: float
    last_id: int = 0
    last_at: datetime | None = None
    events: int = 0
    members: dict[str, Member] = field(default_factory=dict)

    def add(self, event: Any, labels: Labels, member: Member | None) -> None:
        self.labels = common_labels(self.labels, labels)
        self.events += 1
        self.last_id, self.last_at = event.id, event.occurred_at
        if member is not None:
            self.members[member.subject] = member


@dataclass
class RoutingReport:
    """What routing did: events read, and the groups they were filed into."""

    events: int = 0
    groups: set[int] = field(default_factory=set)


def route_key(index: int, route: Route) -> str:
    """A route's identity in its groups: its place in the file and what it matches, so
    that an edited route starts groups of its own (spelled here, not by its description,
    which may change with no change to the route)."""
    match = route.match.model_dump(mode="json", exclude_none=True)
    return f"routes[{index}] {json.dumps(match, sort_keys=True)}"


def group_key(route: Route, labels: Labels) -> dict[str, Any]:
    """The values of the route's group_by labels (missing ones as null); an assignment's
    also its owner, whatever the route groups by: each owner's message is their own, and
    never speaks for someone else's assignments (nor goes to them)."""
    key: dict[str, Any] = {name: labels.get(name) for name in route.group_by}
    if labels.get("event") == "exception.assigned":
        key["owner"] = labels.get("owner")
    return key


def member_of(event: Any) -> Member | None:
    """The exception or SLO an event is about; None for a passing one (a failed replay)."""
    if event.exception_id is not None:
        return Member(
            f"exception:{event.exception_id}",
            correlation_id=event.correlation_id,
            exception_id=event.exception_id,
        )
    if event.type == "slo.alert" and event.facts.get("process"):
        return Member(f"slo:{event.facts['process']}", process=event.facts["process"])
    return None


def route_batch(
    conn: psycopg.Connection, config: AlertsConfig, now: datetime, limit: int = BATCH
) -> RoutingReport:
    """File up to `limit` unrouted events, in id order, in the caller's transaction (which
    holds the router's lock), as of `now`."""
    cur = conn.cursor(row_factory=namedtuple_row)
    events: list[Any] = cur.execute(_UNROUTED, {"limit": limit}).fetchall()
    report = RoutingReport(events=len(events))
    if not events:
        return report
    keys = [route_key(index, route) for index, route in enumerate(config.routes)]
    filings: dict[tuple[str, str], _Filing] = {}
    changed: set[str] = set()
    reopened: set[str] = set()
    for event in events:
        labels = event_labels(event.type, event.correlation_id, event.facts)
        member = member_of(event)
        if member is not None and event.type in _STATUS_CHANGES:
            changed.add(member.subject)
        if member is not None and event.type == _REOPENED:
            reopened.add(member.subject)
        for route, route_ident in zip(config.routes, keys, strict=True):
            if not matches(route.match, labels):
                continue
            key = group_key(route, labels)
            ident = (route_ident, json.dumps(key, sort_keys=True))
            if ident not in filings:
                filings[ident] = _Filing(
                    ident[0],
                    key,
                    labels,
                    first_id=event.id,
                    first_at=event.occurred_at,
                    wait=route.group_wait.total_seconds(),
                    every=route.group_interval.total_seconds(),
                )
            filings[ident].add(event, labels, member)
            if not route.continue_:
                break
    if reopened:
        _reopen(cur, config, sorted(reopened), now)
    if changed:
        cur.execute(_MARK_STALE, {"subjects": sorted(changed)})
    if filings:
        report.groups = _file(cur, list(filings.values()), now)
    cur.execute(_MARK_ROUTED, {"now": now, "ids": [event.id for event in events]})
    return report


def _reopen(
    cur: psycopg.Cursor[Any], config: AlertsConfig, subjects: list[str], now: datetime
) -> None:
    """Open again the groups that told the reopened `subjects` resolved (or have them join
    the active group of their route and key)."""
    keys = [route_key(index, route) for index, route in enumerate(config.routes)]
    every = [route.group_interval.total_seconds() for route in config.routes]
    cur.execute(_REOPEN_GROUPS, {"routes": keys, "every": every, "subjects": subjects, "now": now})
    cur.execute(_JOIN_ACTIVE, {"subjects": subjects})


def _file(cur: psycopg.Cursor[Any], filings: Sequence[_Filing], now: datetime) -> set[int]:
    """Write the batch's filings into their groups (opening new ones) and members; the
    ids of the groups."""
    rows = cur.execute(
        _FILE,
        {
            "now": now,
            "route": [f.route for f in filings],
            "group_key": [json.dumps(f.group_key, sort_keys=True) for f in filings],
            "labels": [json.dumps(f.labels | f.group_key) for f in filings],
            "events": [f.events for f in filings],
            "first_id": [f.first_id for f in filings],
            "last_id": [f.last_id for f in filings],
            "first_at": [f.first_at for f in filings],
            "last_at": [f.last_at for f in filings],
            "wait": [f.wait for f in filings],
            "every": [f.every for f in filings],
        },
    ).fetchall()
    ids = {(row.route, json.dumps(row.group_key, sort_keys=True)): row.id for row in rows}
    members = [
        (ids[(f.route, json.dumps(f.group_key, sort_keys=True))], m)
        for f in filings
        for m in f.members.values()
    ]
    if members:
        cur.execute(
            _ADD_MEMBERS,
            {
                "group_id": [group for group, _ in members],
                "subject": [m.subject for _, m in members],
                "correlation_id": [m.correlation_id for _, m in members],
                "exception_id": [m.exception_id for _, m in members],
                "process": [m.process for _, m in members],
            },
        )
    return set(ids.values())

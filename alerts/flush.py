"""The flush: reads the state of the groups whose members changed, and turns each due group
into one notification per channel of its route (`alert_notifications`, which the
deliverers send), with Alertmanager's timing:

- a new group is told `group_wait` after it opened (the router set that);
- a changed group (new events, or a new state) at most every `group_interval`;
- an unchanged group still firing again `repeat_interval` after it was last told;
- a group all of whose exceptions (or SLOs) are closed is resolved: told once, to close
  the incident its first notification opened, and closed itself; one that closed before
  anybody was told is nobody's news and closes silently.

A group is acknowledged once one of its open exceptions is assigned or in progress: that
is told too (PagerDuty's acknowledge), and not repeated. A group about nothing lasting (a
failed replay) stays firing but is not repeated: there is nothing to become resolved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb

from alerts.compose import GroupView, compose, dedup_key, stored
from alerts.config import AlertsConfig, Route
from alerts.router import route_key
from q2c.vocabulary import sql_list

log = logging.getLogger(__name__)

BATCH = 500  # groups flushed per statement round
# An exception someone took: assigned or in progress (what escalations call acknowledged).
ACKNOWLEDGED_STATUSES = ("assigned", "in_progress")

# The members of every stale or due group, read again: open and acknowledged ones. A group
# told before whose state changed is due group_interval after it was last told (at once if
# that is past), unless it was due sooner.
_REFRESH = f"""
WITH targets AS (
    SELECT id FROM alert_groups
    WHERE closed_at IS NULL AND (stale OR next_flush_at <= %(now)s)
), counted AS (
    SELECT m.group_id, count(*) AS members,
           count(*) FILTER (WHERE s.open) AS open,
           count(*) FILTER (WHERE s.open AND s.taken) AS taken
    FROM targets t
    JOIN alert_group_members m ON m.group_id = t.id
    LEFT JOIN exceptions e ON e.correlation_id = m.correlation_id AND e.id = m.exception_id
    LEFT JOIN slo_alert_states a ON a.process = m.process
    CROSS JOIN LATERAL (SELECT
        CASE WHEN m.exception_id IS NOT NULL THEN coalesce(q2c_is_open(e.status), false)
             ELSE coalesce(a.state, 'ok') <> 'ok' END AS open,
        coalesce(e.status IN {sql_list(ACKNOWLEDGED_STATUSES)}, false) AS taken) s
    GROUP BY m.group_id
), computed AS (
    SELECT t.id, coalesce(c.members, 0) AS members, coalesce(c.open, 0) AS open,
           coalesce(c.taken, 0) AS taken,
           CASE WHEN c.members IS NULL THEN 'firing'
                WHEN c.open = 0 THEN 'resolved'
                WHEN c.taken > 0 THEN 'acknowledged'
                ELSE 'firing' END AS state
    FROM targets t LEFT JOIN counted c ON c.group_id = t.id
), timing AS (
    SELECT * FROM unnest(%(routes)s::text[], %(every)s::float8[]) AS r(route, every)
)
UPDATE alert_groups g
SET members = c.members, open_members = c.open, acknowledged_members = c.taken,
    state = c.state, stale = false,
    next_flush_at = CASE
        WHEN g.last_flushed_at IS NULL OR c.state = g.told_state THEN g.next_flush_at
        ELSE least(g.next_flush_at, greatest(%(now)s, g.last_flushed_at + make_interval(
            secs => (SELECT r.every FROM timing r WHERE r.route = g.route))))
    END
FROM computed c
WHERE g.id = c.id
"""

_DUE = """
SELECT g.id, g.route, g.state, g.told_state, g.labels, g.events, g.unsent_events, g.members,
       g.open_members, g.acknowledged_members, g.last_flushed_at, g.flushes,
       e.type AS last_type, q2c_event_facts(e) AS last_facts, e.dead_letter_id,
       (SELECT m.exception_id FROM alert_group_members m
        WHERE m.group_id = g.id AND m.exception_id IS NOT NULL
        ORDER BY m.subject LIMIT 1) AS exception_id
FROM alert_groups g JOIN alert_events e ON e.id = g.last_event_id
WHERE g.closed_at IS NULL AND g.next_flush_at <= %(now)s
ORDER BY g.next_flush_at, g.id
LIMIT %(limit)s
"""

_NOTIFY = """
INSERT INTO alert_notifications (
    group_id, flush, channel, state, dedup_key, message, next_attempt_at, created_at)
VALUES (%(group)s, %(flush)s, %(channel)s, %(state)s, %(dedup_key)s, %(message)s, %(now)s,
        %(now)s)
ON CONFLICT (group_id, flush, channel) DO NOTHING
"""

_TOLD = """
UPDATE alert_groups
SET flushes = %(flush)s, told_state = state, unsent_events = 0, last_flushed_at = %(now)s,
    next_flush_at = %(next)s, closed_at = %(closed)s
WHERE id = %(group)s
"""

_RESCHEDULE = """
UPDATE alert_groups SET next_flush_at = %(next)s, closed_at = %(closed)s WHERE id = %(group)s
"""


@dataclass(frozen=True)
class Decision:
    """What a due group does now: be told (or not), when it is due next, whether it ends."""

    notify: bool
    next_flush_at: datetime | None
    close: bool


def decide(group: Any, route: Route | None, now: datetime) -> Decision:
    """The decision for a due `group` (a row of _DUE) of `route` (None: the route is no
    longer configured, so nobody is to be told of it any more)."""
    if route is None:
        return Decision(False, None, True)
    if group.state == "resolved":
        return Decision(group.told_state is not None, None, True)
    changed = group.unsent_events > 0 or group.state != group.told_state
    repeats = group.state == "firing" and group.members > 0
    last: datetime | None = group.last_flushed_at
    repeat_due = repeats and last is not None and last + route.repeat_interval <= now
    notify = changed or repeat_due
    if notify:
        last = now
    next_at = last + route.repeat_interval if repeats and last is not None else None
    return Decision(notify, next_at, False)


@dataclass
class FlushReport:
    """What the flush did: notifications written, the groups told and those closed."""

    notifications: int = 0
    told: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)


def flush(conn: psycopg.Connection, config: AlertsConfig, base: str, now: datetime) -> FlushReport:
    """Refresh and flush every due group, in the caller's transaction (which holds the
    router's lock), as of `now`; messages link into the console at `base`."""
    routes = {route_key(i, route): route for i, route in enumerate(config.routes)}
    cur = conn.cursor(row_factory=namedtuple_row)
    cur.execute(
        _REFRESH,
        {
            "now": now,
            "routes": list(routes),
            "every": [r.group_interval.total_seconds() for r in routes.values()],
        },
    )
    report = FlushReport()
    while True:
        due: list[Any] = cur.execute(_DUE, {"now": now, "limit": BATCH}).fetchall()
        for group in due:
            route = routes.get(group.route)
            decision = decide(group, route, now)
            closed = now if decision.close else None
            if decision.notify and route is not None:
                try:
                    report.notifications += _notify(cur, group, route, base, now)
                except Exception:  # a defect composing its message: the other groups go on
                    log.exception("alert group %s: no notification composed", group.id)
                    cur.execute(
                        _RESCHEDULE,
                        {"group": group.id, "next": decision.next_flush_at, "closed": None},
                    )
                    continue
                cur.execute(
                    _TOLD,
                    {
                        "group": group.id,
                        "flush": group.flushes + 1,
                        "now": now,
                        "next": decision.next_flush_at,
                        "closed": closed,
                    },
                )
                report.told.append(group.id)
            else:
                cur.execute(
                    _RESCHEDULE,
                    {"group": group.id, "next": decision.next_flush_at, "closed": closed},
                )
            if decision.close:
                report.closed.append(group.id)
        if len(due) < BATCH:
            return report


def _notify(cur: psycopg.Cursor[Any], group: Any, route: Route, base: str, now: datetime) -> int:
    """Write the group's notification for each channel of its route; how many."""
    view = GroupView(**{f.name: getattr(group, f.name) for f in fields(GroupView)})
    written = 0
    for channel in route.to:
        # Each channel's message has an id of its own (the webhook's `webhook-id`), kept
        # across its retries; the group's dedup key is the same in all.
        notification = compose(view, base, now)
        written += cur.execute(
            _NOTIFY,
            {
                "group": group.id,
                "flush": group.flushes + 1,
                "channel": channel,
                "state": group.state,
                "dedup_key": dedup_key(group.id),
                "message": Jsonb(stored(notification)),
                "now": now,
            },
        ).rowcount
    return written

"""A group told once, at its creation, and closed: how escalations and digests notify.
Their news is not a route's (its timing, its channels, its open incident), so each gets a
group of its own, already told, with one notification per channel in the notification log;
delivery, silences and the log then treat it as any other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts.compose import dedup_key, stored
from alerts.matching import Labels
from alerts.notification import Notification, new_notification_id

_GROUP = """
INSERT INTO alert_groups (
    route, group_key, labels, state, events, unsent_events, members, open_members,
    acknowledged_members, first_event_id, last_event_id, first_event_at, last_event_at,
    created_at, next_flush_at, flushes, last_flushed_at, told_state, closed_at)
VALUES (%(route)s, %(key)s, %(labels)s, 'firing', %(events)s, 0, %(members)s, %(members)s, 0,
        %(first)s, %(last)s, %(first_at)s, %(last_at)s, %(now)s, NULL, 1, %(now)s, 'firing',
        %(now)s)
RETURNING id
"""

_MEMBER = """
INSERT INTO alert_group_members (group_id, subject, correlation_id, exception_id)
VALUES (%s, %s, %s, %s)
"""

_NOTIFY = """
INSERT INTO alert_notifications (
    group_id, flush, channel, state, dedup_key, message, next_attempt_at, created_at)
VALUES (%(group)s, 1, %(channel)s, 'firing', %(dedup_key)s, %(message)s, %(now)s, %(now)s)
"""


@dataclass(frozen=True)
class Told:
    """A group told once at its creation and closed: what escalations and digests notify
    through. `members`: (correlation ID, exception id) of the exceptions it is about."""

    route: str  # 'escalation:<step>', 'digest:<name>': no route of alerts.yaml
    key: dict[str, Any]
    labels: Labels
    first_event: tuple[int, datetime]  # (id, occurred_at) of the events it stands for
    last_event: tuple[int, datetime]
    events: int
    members: Sequence[tuple[str, int]] = ()


def tell_once(
    cur: psycopg.Cursor[Any],
    told: Told,
    notification: Notification,
    channels: Sequence[str],
    now: datetime,
) -> int:
    """Write `told`'s group and `notification` for each of `channels` (each with an id of
    its own) in the caller's transaction; the group's id."""
    row = cur.execute(
        _GROUP,
        {
            "route": told.route,
            "key": Jsonb(told.key),
            "labels": Jsonb(told.labels),
            "events": told.events,
            "members": len(told.members),
            "first": told.first_event[0],
            "last": told.last_event[0],
            "first_at": told.first_event[1],
            "last_at": told.last_event[1],
            "now": now,
        },
    ).fetchone()
    assert row is not None
    group_id: int = row[0]
    cur.executemany(_MEMBER, [(group_id, f"exception:{e}", c, e) for c, e in told.members])
    kept = replace(notification, group_key=dedup_key(group_id))
    for channel in channels:
        message = stored(replace(kept, id=new_notification_id()))
        cur.execute(
            _NOTIFY,
            {
                "group": group_id,
                "channel": channel,
                "dedup_key": dedup_key(group_id),
                "message": Jsonb(message),
                "now": now,
            },
        )
    return group_id

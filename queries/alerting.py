"""Alerting read back for the console: the notification log (what was sent to whom, when,
delivered, failed or suppressed and why), newest first and a bounded page at a time, and
the notification groups still open. Anyone from finance_ops up reads them: finance must
see what was sent to it. The log is written by alerts/ only; nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from queries.audit import record
from queries.users import allowed_user

# As migration 0018's CHECK on alert_notifications.status has them.
NOTIFICATION_STATUSES = ("pending", "delivering", "delivered", "failed", "suppressed")
MAX_PAGE_ROWS = 500  # a page of the log at most (count)

# The one exception a group is about (its link), when it is about exactly one.
_LOG = """
SELECT n.id, n.created_at, n.channel, n.state, n.status, n.attempts, n.last_attempt_at,
       n.finished_at, n.outcome, n.suppressed_by, n.group_id, g.route,
       n.message ->> 'title' AS title, (n.message ->> 'count')::bigint AS count,
       n.message ->> 'correlation_id' AS correlation_id,
       CASE WHEN g.members = 1 THEN (
           SELECT max(m.exception_id) FROM alert_group_members m WHERE m.group_id = g.id
       ) END AS exception_id
FROM alert_notifications n JOIN alert_groups g ON g.id = n.group_id
WHERE (CAST(:channel AS text) IS NULL OR n.channel = :channel)
  AND (CAST(:status AS text) IS NULL OR n.status = :status)
ORDER BY n.created_at DESC, n.id DESC
LIMIT :limit OFFSET :offset
"""
_COUNT = """
SELECT count(*) FROM alert_notifications n
WHERE (CAST(:channel AS text) IS NULL OR n.channel = :channel)
  AND (CAST(:status AS text) IS NULL OR n.status = :status)
"""
_CHANNELS = "SELECT DISTINCT channel FROM alert_notifications ORDER BY channel"
_GROUPS = """
SELECT id, route, group_key, state, events, members, open_members, acknowledged_members,
       first_event_at, last_event_at, next_flush_at, last_flushed_at, flushes
FROM alert_groups WHERE closed_at IS NULL
ORDER BY last_event_at DESC, id DESC
LIMIT :limit
"""


@dataclass(frozen=True)
class LogFilter:
    """Which notifications to read; None means any channel, any status."""

    channel: str | None = None
    status: str | None = None


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE_ROWS))


def list_notifications(
    engine: Engine, actor: str, filters: LogFilter, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Notifications matching `filters`, newest first: at most `limit` (capped at
    MAX_PAGE_ROWS) from `offset` on; an empty list when none match. `exception_id` is set
    when the notification's group is about one exception."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "alerts.view")
        rows = conn.execute(
            text(_LOG),
            {
                "channel": filters.channel,
                "status": filters.status,
                "limit": _limit(limit),
                "offset": max(0, offset),
            },
        )
        return [dict(row._mapping) for row in rows]


def count_notifications(engine: Engine, actor: str, filters: LogFilter) -> int:
    """How many notifications match `filters`."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "alerts.view")
        params = {"channel": filters.channel, "status": filters.status}
        return int(conn.execute(text(_COUNT), params).scalar_one())


def logged_channels(engine: Engine, actor: str) -> list[str]:
    """The channels the log names (configured or since removed), by name."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "alerts.view")
        return list(conn.execute(text(_CHANNELS)).scalars())


def active_groups(engine: Engine, actor: str, limit: int = 100) -> list[dict[str, Any]]:
    """The notification groups not yet closed (firing, acknowledged, or resolved but not yet
    told), the latest event first; at most `limit` (capped at MAX_PAGE_ROWS)."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "alerts.view")
        rows = conn.execute(text(_GROUPS), {"limit": _limit(limit)})
        return [dict(row._mapping) for row in rows]


def check_test_send(engine: Engine, actor: str) -> None:
    """PermissionDenied unless `actor` may send test notifications (oncall and up), read
    from the database now: asked before anything is sent."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "alerts.test")


def record_test_send(engine: Engine, actor: str, channel: str, outcome: str) -> None:
    """Audit a test notification `actor` sent through `channel` (`alert.test`, with what
    the receiver answered, or why it failed); PermissionDenied below oncall."""
    with engine.begin() as conn:
        user = allowed_user(conn, actor, "alerts.test")
        record(
            conn,
            user.username,
            "alert.test",
            object_type="channel",
            object_id=channel,
            detail={"outcome": outcome[:500]},
        )

"""The audit trails read back, for admins: every action by every actor, newest first.

The two trails (`audit_log` for sign-ins, tokens and users; `exception_events` for what
people and the product do to exceptions) read as one, each row an actor, an action, an
object and what changed. Exception actions read as `exception.<action>`. Details and
comments are masked as everywhere else.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import orjson
from sqlalchemy import Engine, TextClause, text

from q2c.masking import configured
from queries.users import allowed_user

EXCEPTION_ACTION_PREFIX = "exception."
COLUMNS = ("at", "actor", "action", "object_type", "object_id", "client", "detail")
_EXPORT_CHUNK = 2_000


@dataclass(frozen=True)
class AuditFilter:
    """What to read; None means any. Actions are whole (as `audit_actions` lists them);
    object IDs as text (a user name, an exception's number, a token's)."""

    actor: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_audit(
    engine: Engine, actor: str, filters: AuditFilter, limit: int = 200, offset: int = 0
) -> list[dict[str, Any]]:
    """Actions matching `filters`, newest first: `limit` of them from `offset` on; admins only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "audit.view")
        query, params = _query(filters)
        rows = conn.execute(
            text(f"{query.text} LIMIT :limit OFFSET :offset"),
            {**params, "limit": limit, "offset": offset},
        )
        masking = configured()
        return [{**row._mapping, "detail": masking.value(row.detail)} for row in rows]


def count_audit(engine: Engine, actor: str, filters: AuditFilter) -> int:
    """How many actions match `filters`; admins only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "audit.view")
        query, params = _query(filters, counting=True)
        return int(conn.execute(query, params).scalar_one())


def audit_actions(engine: Engine, actor: str) -> list[str]:
    """The actions recorded so far, for a filter's choices; admins only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "audit.view")
        rows = conn.execute(
            text(
                "SELECT DISTINCT action FROM audit_log UNION "
                f"SELECT DISTINCT '{EXCEPTION_ACTION_PREFIX}' || action FROM exception_events "
                "ORDER BY 1"
            )
        )
        return list(rows.scalars())


def export_audit(engine: Engine, actor: str, filters: AuditFilter, out: TextIO) -> int:
    """Write every action matching `filters` to `out` as CSV (details masked, as JSON),
    streamed a chunk at a time; admins only. Returns how many were written."""
    masking = configured()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    written = 0
    with engine.connect() as conn:
        allowed_user(conn, actor, "audit.view")
        query, params = _query(filters)
        result = conn.execution_options(stream_results=True, yield_per=_EXPORT_CHUNK).execute(
            query, params
        )
        for chunk in result.partitions():
            for row in chunk:
                detail = orjson.dumps(masking.value(row.detail)).decode()
                writer.writerow([*(getattr(row, c) for c in COLUMNS[:-1]), detail])
            written += len(chunk)
    return written


def _query(filters: AuditFilter, *, counting: bool = False) -> tuple[TextClause, dict[str, Any]]:
    """Both trails as one, filtered on each side (so each uses its own indexes)."""
    log, events, params = _conditions(filters)
    log_rows = (
        "SELECT at, actor, action, object_type, object_id, client, detail, id, 0 AS trail "
        f"FROM audit_log WHERE {' AND '.join(log)}"
    )
    event_rows = (
        f"SELECT at, actor, '{EXCEPTION_ACTION_PREFIX}' || action, 'exception', "
        "exception_id::text, NULL, jsonb_strip_nulls(jsonb_build_object("
        "'correlation_id', correlation_id, 'before', before, 'after', after, "
        "'comment', comment)), id, 1 "
        f"FROM exception_events WHERE {' AND '.join(events)}"
    )
    union = f"{log_rows} UNION ALL {event_rows}"
    if counting:
        return text(f"SELECT count(*) FROM ({union}) trails"), params
    return text(f"SELECT * FROM ({union}) trails ORDER BY at DESC, trail, id DESC"), params


def _conditions(filters: AuditFilter) -> tuple[list[str], list[str], dict[str, Any]]:
    """The WHERE clauses of each trail, and their parameters."""
    log, events = ["true"], ["true"]
    params: dict[str, Any] = {}
    if filters.actor:
        log.append("actor = :actor")
        events.append("actor = :actor")
        params["actor"] = filters.actor
    if filters.since is not None:
        log.append("at >= :since")
        events.append("at >= :since")
        params["since"] = filters.since
    if filters.until is not None:
        log.append("at < :until")
        events.append("at < :until")
        params["until"] = filters.until
    if filters.action:  # exception actions are stored in their trail without the prefix
        log.append("action = :action")
        params["action"] = filters.action
        bare = filters.action.removeprefix(EXCEPTION_ACTION_PREFIX)
        events.append("action = :bare_action" if bare != filters.action else "false")
        params["bare_action"] = bare
    # A dead letter's actions (replays asked, delivered, failed; discards) are in the trail
    # of its exception, each naming the letter in `after`.
    letters = filters.object_type == "dead_letter"
    if filters.object_type:
        log.append("object_type = :object_type")
        if letters:
            events.append("after ? 'dead_letter_id'")
        elif filters.object_type != "exception":
            events.append("false")
        params["object_type"] = filters.object_type
    if filters.object_id:
        log.append("object_id = :object_id")
        events.append(
            "after ->> 'dead_letter_id' = :object_id"
            if letters
            else "exception_id::text = :object_id"
        )
        params["object_id"] = filters.object_id
    return log, events, params

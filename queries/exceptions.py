"""Exceptions: readers for triage (filtered lists, groups, detail) and the commands people
run on them (assign, comment, resolve, ignore), each role-checked and audited in the same
transaction as the change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from q2c.errors import Q2CError
from queries.users import acting_user, allowed_user

OPEN_STATUSES = ("open", "assigned", "in_progress", "replayed")
CLOSED_STATUSES = ("resolved", "auto_resolved", "ignored")
_COLUMNS = (
    "id, correlation_id, process, stage, system, kind, fingerprint, error_type, message, "
    "status, impact, owner, first_seen, last_seen, occurrences, due_at, resolved_at, "
    "resolution, customer_id, order_id, invoice_id, amount::float8 AS amount, currency, "
    "legal_entity, now() - first_seen AS age, (due_at < now() AND status IN "
    "('open', 'assigned', 'in_progress', 'replayed')) AS overdue"
)


@dataclass(frozen=True)
class ExceptionFilter:
    """Triage filters; None (or empty) means any."""

    statuses: Sequence[str] = OPEN_STATUSES
    process: str | None = None
    stage: str | None = None
    system: str | None = None
    impact: Sequence[str] = ()
    kind: str | None = None
    owner: str | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    search: str | None = None


@dataclass
class ActionResult:
    """What a bulk command changed, and why it left the others alone."""

    changed: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def list_exceptions(engine: Engine, filters: ExceptionFilter, limit: int = 500) -> list[dict]:
    """Exceptions matching `filters`, most urgent first (impact, then oldest)."""
    clauses, params = _where(filters)
    query = text(
        f"SELECT {_COLUMNS} FROM exceptions WHERE {' AND '.join(clauses)} "
        "ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low'], impact), "
        "first_seen LIMIT :limit"
    )
    for name in ("statuses", "impacts"):
        if name in params:
            query = query.bindparams(bindparam(name, expanding=True))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query, {**params, "limit": limit})]


def group_exceptions(engine: Engine, filters: ExceptionFilter) -> list[dict]:
    """Exceptions matching `filters` grouped by fingerprint: alike failures together."""
    clauses, params = _where(filters)
    query = text(
        "SELECT fingerprint, min(process) AS process, min(stage) AS stage, "
        "min(system) AS system, min(kind) AS kind, min(error_type) AS error_type, "
        "(array_agg(message ORDER BY first_seen))[1] AS sample_message, count(*) AS exceptions,"
        " sum(occurrences) AS occurrences, min(first_seen) AS first_seen, "
        "max(last_seen) AS last_seen, sum(amount)::float8 AS amount "
        f"FROM exceptions WHERE {' AND '.join(clauses)} GROUP BY fingerprint "
        "ORDER BY count(*) DESC, max(last_seen) DESC"
    )
    for name in ("statuses", "impacts"):
        if name in params:
            query = query.bindparams(bindparam(name, expanding=True))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query, params)]


def _where(filters: ExceptionFilter) -> tuple[list[str], dict[str, Any]]:
    clauses, params = ["true"], {}
    if filters.statuses:
        clauses.append("status IN :statuses")
        params["statuses"] = list(filters.statuses)
    if filters.impact:
        clauses.append("impact IN :impacts")
        params["impacts"] = list(filters.impact)
    for column in ("process", "stage", "system", "kind", "owner"):
        value = getattr(filters, column)
        if value:
            clauses.append(f"{column} = :{column}")
            params[column] = value
    if filters.older_than is not None:
        clauses.append("first_seen <= now() - :older_than")
        params["older_than"] = filters.older_than
    if filters.newer_than is not None:
        clauses.append("first_seen > now() - :newer_than")
        params["newer_than"] = filters.newer_than
    if filters.search:
        clauses.append(
            "(message ILIKE :search OR error_type ILIKE :search OR correlation_id ILIKE :search"
            " OR invoice_id ILIKE :search OR customer_id ILIKE :search OR order_id ILIKE :search)"
        )
        params["search"] = f"%{filters.search}%"
    return clauses, params


def exception_detail(engine: Engine, exception_id: int) -> dict[str, Any]:
    """One exception with its failures, audit history, its transaction's timeline, dead
    letters and replays."""
    with engine.connect() as conn:
        row = conn.execute(
            text(f"SELECT {_COLUMNS} FROM exceptions WHERE id = :id"), {"id": exception_id}
        ).one_or_none()
        if row is None:
            raise Q2CError(f"no exception {exception_id}")
        detail = dict(row._mapping)
        key = {"c": detail["correlation_id"], "id": exception_id}
        detail["occurrences"] = _rows(
            conn,
            "SELECT occurred_at, system, error_type, message, "
            "encode(trace_id, 'hex') AS trace_id, occurrences AS failures "
            "FROM exception_occurrences WHERE correlation_id = :c "
            "AND exception_id = :id ORDER BY occurred_at, record_key",
            key,
        )
        detail["history"] = _rows(
            conn,
            "SELECT at, actor, action, before, after, comment "
            "FROM exception_events WHERE correlation_id = :c "
            "AND exception_id = :id ORDER BY at, id",
            key,
        )
        detail["timeline"] = _rows(
            conn,
            "SELECT reached_at, stage, system, status, business "
            "FROM stage_events WHERE correlation_id = :c "
            "ORDER BY reached_at, stage, system",
            key,
        )
        detail["dead_letters"] = _rows(
            conn,
            "SELECT id, occurred_at, target_url, method, status "
            "FROM dead_letters WHERE correlation_id = :c "
            "ORDER BY occurred_at",
            key,
        )
        detail["replays"] = _rows(
            conn,
            "SELECT id, dead_letter_id, requested_by, requested_at, "
            "status, attempts, response_code FROM replays "
            "WHERE correlation_id = :c ORDER BY requested_at",
            key,
        )
    return detail


def _rows(conn: Connection, sql: str, params: dict) -> list[dict]:
    return [dict(row._mapping) for row in conn.execute(text(sql), params)]


# --- commands ---------------------------------------------------------------------------

_LOCK = text(
    "SELECT id, correlation_id, status, owner, resolution FROM exceptions WHERE id IN :ids "
    "ORDER BY correlation_id, id FOR UPDATE"
).bindparams(bindparam("ids", expanding=True))
_AUDIT = text(
    "INSERT INTO exception_events (correlation_id, exception_id, actor, action, before, after, "
    "comment) VALUES (:c, :id, :actor, :action, :before, :after, :comment)"
).bindparams(bindparam("before", type_=JSONB), bindparam("after", type_=JSONB))


def assign(
    engine: Engine, actor: str, ids: Sequence[int], owner: str, comment: str | None = None
) -> ActionResult:
    """Give open exceptions an owner; an `open` one becomes `assigned`."""
    with engine.begin() as conn:
        acting_user(conn, owner)  # the new owner must exist
        return _act(
            conn,
            actor,
            ids,
            "assigned",
            comment,
            lambda row: {
                "owner": owner,
                "status": "assigned" if row.status == "open" else row.status,
            },
        )


def comment(engine: Engine, actor: str, exception_id: int, note: str) -> ActionResult:
    """Add a comment to an exception's history (open or closed)."""
    if not note.strip():
        raise Q2CError("a comment needs text")
    with engine.begin() as conn:
        return _act(conn, actor, [exception_id], "commented", note, lambda row: {}, closed_too=True)


def close_exceptions(
    engine: Engine, actor: str, ids: Sequence[int], status: str, reason: str
) -> ActionResult:
    """Close exceptions as `resolved` or `ignored` (not worth acting on), with the reason."""
    if status not in ("resolved", "ignored"):
        raise Q2CError(f"exceptions are closed as resolved or ignored, not {status}")
    if not reason.strip():
        raise Q2CError(f"marking exceptions {status} needs a reason")
    with engine.begin() as conn:
        return _act(
            conn, actor, ids, status, reason, lambda row: {"status": status, "resolution": reason}
        )


def _act(
    conn: Connection,
    actor: str,
    ids: Sequence[int],
    action: str,
    note: str | None,
    changes,
    closed_too: bool = False,
) -> ActionResult:
    """Apply `changes(row)` to each exception (locked), writing one audit row per change."""
    user = allowed_user(conn, actor, "exceptions.act")
    result = ActionResult()
    rows = {row.id: row for row in conn.execute(_LOCK, {"ids": list(ids)})}
    for exception_id in ids:
        row = rows.get(exception_id)
        if row is None:
            result.skipped[exception_id] = "no such exception"
            continue
        if row.status in CLOSED_STATUSES and not closed_too:
            result.skipped[exception_id] = f"already {row.status}"
            continue
        after = changes(row)
        before = {key: getattr(row, key) for key in after}
        if after:
            assignments = ", ".join(f"{key} = :{key}" for key in after)
            closing = (
                ", resolved_at = clock_timestamp()"
                if after.get("status") in CLOSED_STATUSES
                else ""
            )
            conn.execute(
                text(
                    f"UPDATE exceptions SET {assignments}{closing}, updated_at = now() "
                    "WHERE correlation_id = :c AND id = :id"
                ),
                {**after, "c": row.correlation_id, "id": row.id},
            )
        conn.execute(
            _AUDIT,
            {
                "c": row.correlation_id,
                "id": row.id,
                "actor": user.username,
                "action": action,
                "before": before or None,
                "after": after or None,
                "comment": note,
            },
        )
        result.changed.append(exception_id)
    return result

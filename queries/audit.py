"""The audit trails, written in the caller's transaction, so that an action and its record
commit together or not at all: `exception_events` for what people do to exceptions (and to
the dead letters behind them), `audit_log` for the rest (sign-ins, tokens, users)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

_INSERT = text(
    "INSERT INTO audit_log (actor, action, object_type, object_id, token_id, client, detail) "
    "VALUES (:actor, :action, :object_type, :object_id, :token_id, :client, :detail)"
).bindparams(bindparam("detail", type_=JSONB))
MAX_ACTOR_CHARS = 64  # a failed sign-in records the name typed, which may be anything
# What an audit_log row is about (what the Audit log page filters by; exceptions have a
# trail of their own).
AuditObject = Literal[
    "user", "dead_letter", "redrive", "reconciliation_break", "silence", "channel", "saved_view"
]
AUDIT_OBJECTS: tuple[AuditObject, ...] = get_args(AuditObject)
_EXCEPTION_EVENT = text(
    "INSERT INTO exception_events (correlation_id, exception_id, actor, action, before, after, "
    "comment) VALUES (:c, :id, :actor, :action, :before, :after, :comment)"
).bindparams(bindparam("before", type_=JSONB), bindparam("after", type_=JSONB))


def record_exception_event(
    conn: Connection,
    correlation_id: str,
    exception_id: int,
    actor: str,
    action: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    comment: str | None = None,
) -> None:
    """Append one action on an exception to its audit trail, in the caller's transaction."""
    conn.execute(
        _EXCEPTION_EVENT,
        {
            "c": correlation_id,
            "id": exception_id,
            "actor": actor,
            "action": action,
            "before": before or None,
            "after": after or None,
            "comment": comment,
        },
    )


def record(
    conn: Connection,
    actor: str,
    action: str,
    *,
    object_type: AuditObject | None = None,
    object_id: object = None,
    token_id: int | None = None,
    client: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one row to the audit log inside the caller's transaction."""
    conn.execute(
        _INSERT,
        {
            "actor": actor[:MAX_ACTOR_CHARS],
            "action": action,
            "object_type": object_type,
            "object_id": None if object_id is None else str(object_id),
            "token_id": token_id,
            "client": client,
            "detail": detail or {},
        },
    )

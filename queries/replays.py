"""Dead letters and replays: readers for on-call, and the replay request command.

A replay request is idempotent: while a replay of a dead letter is pending or delivering,
asking again (a double click, two engineers at once) returns that same replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from q2c.errors import Q2CError
from queries.roles import require
from queries.users import allowed_user


class ReplayRefused(Q2CError):
    """The replay cannot be requested (target not allowed, nothing to replay, …)."""


def target_allowed(url: str | None, allowed_hosts: frozenset[str]) -> bool:
    """Whether `url` is http(s) to a host (or host:port) on the allow-list."""
    if not url:
        return False
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    return host in allowed_hosts or (
        parts.port is not None and f"{host}:{parts.port}" in allowed_hosts
    )


def list_dead_letters(
    engine: Engine,
    actor: str,
    status: str | None = None,
    search: str | None = None,
    limit: int = 500,
) -> list[dict]:
    """Dead letters, newest first, with their latest replay's status; on-call only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "dead_letters.view")
        clauses, params = ["true"], {"limit": limit}
        if status:
            clauses.append("d.status = :status")
            params["status"] = status
        if search:
            clauses.append(
                "(d.correlation_id ILIKE :q OR d.target_url ILIKE :q OR d.error_message ILIKE :q)"
            )
            params["q"] = f"%{search}%"
        rows = conn.execute(
            text(
                "SELECT d.id, d.correlation_id, d.process, d.stage, d.system, d.occurred_at, "
                "d.target_url, d.method, d.status, d.error_type, d.error_message, "
                "d.exception_id, r.id AS replay_id, r.status AS replay_status, "
                "r.attempts AS replay_attempts, r.response_code "
                "FROM dead_letters d LEFT JOIN LATERAL (SELECT * FROM replays r "
                "WHERE r.correlation_id = d.correlation_id AND r.dead_letter_id = d.id "
                "ORDER BY r.requested_at DESC LIMIT 1) r ON true "
                f"WHERE {' AND '.join(clauses)} ORDER BY d.occurred_at DESC LIMIT :limit"
            ),
            params,
        )
        return [dict(row._mapping) for row in rows]


def dead_letter_detail(engine: Engine, actor: str, dead_letter_id: int) -> dict[str, Any]:
    """One dead letter with its payload, headers and replays; on-call only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "dead_letters.view")
        row = conn.execute(
            text("SELECT * FROM dead_letters WHERE id = :id"), {"id": dead_letter_id}
        ).one_or_none()
        if row is None:
            raise Q2CError(f"no dead letter {dead_letter_id}")
        detail = dict(row._mapping)
        detail["replays"] = [
            dict(r._mapping)
            for r in conn.execute(
                text(
                    "SELECT id, requested_by, requested_at, status, attempts, response_code, "
                    "response_excerpt, error, finished_at, payload_override IS NOT NULL "
                    "AS edited FROM replays WHERE correlation_id = :c AND dead_letter_id = :id"
                    " ORDER BY requested_at"
                ),
                {"c": row.correlation_id, "id": row.id},
            )
        ]
    return detail


def replay_status(engine: Engine, actor: str, limit: int = 100) -> list[dict]:
    """The latest replays, newest first; on-call only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "dead_letters.view")
        rows = conn.execute(
            text(
                "SELECT r.id, r.dead_letter_id, r.correlation_id, r.requested_by, "
                "r.requested_at, r.status, r.attempts, r.next_attempt_at, r.response_code, "
                "r.response_excerpt, r.error, r.finished_at, d.target_url "
                "FROM replays r JOIN dead_letters d ON d.correlation_id = r.correlation_id "
                "AND d.id = r.dead_letter_id ORDER BY r.requested_at DESC LIMIT :limit"
            ),
            {"limit": limit},
        )
        return [dict(row._mapping) for row in rows]


@dataclass
class ReplayRequest:
    """Outcome of a request: replays created, replays already under way, refusals."""

    created: dict[int, int] = field(default_factory=dict)  # dead letter → replay
    existing: dict[int, int] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)


_AUDIT = text(
    "INSERT INTO exception_events (correlation_id, exception_id, actor, action, before, after, "
    "comment) VALUES (:c, :e, :actor, :action, :before, :after, :comment)"
).bindparams(bindparam("before", type_=JSONB), bindparam("after", type_=JSONB))


def request_replays(
    engine: Engine,
    actor: str,
    dead_letter_ids: Sequence[int],
    allowed_hosts: frozenset[str],
    payload: str | None = None,
    force: bool = False,
) -> ReplayRequest:
    """Queue one replay per dead letter; `payload` replaces the stored one (the original
    stays in the dead letter and the audit trail). A dead letter already replayed
    successfully is refused unless `force`."""
    outcome = ReplayRequest()
    with engine.begin() as conn:
        user = allowed_user(conn, actor, "replays.request")
        if payload is not None:
            require(user.username, user.role, "replays.edit_payload")
        letters = {
            row.id: row
            for row in conn.execute(
                text(
                    "SELECT id, correlation_id, target_url, idempotency_key, exception_id, "
                    "status, payload FROM dead_letters WHERE id IN :ids "
                    "ORDER BY correlation_id, id FOR UPDATE"
                ).bindparams(bindparam("ids", expanding=True)),
                {"ids": list(dead_letter_ids)},
            )
        }
        for letter_id in dead_letter_ids:
            letter = letters.get(letter_id)
            reason = _refusal(letter, allowed_hosts, force)
            if reason:
                outcome.refused[letter_id] = reason
                continue
            key = {"c": letter.correlation_id, "d": letter.id}
            created = conn.execute(
                text(
                    "INSERT INTO replays (correlation_id, dead_letter_id, requested_by, "
                    "idempotency_key, payload_override) VALUES (:c, :d, :u, :k, :p) "
                    "ON CONFLICT (correlation_id, dead_letter_id) "
                    "WHERE status IN ('pending', 'delivering') DO NOTHING RETURNING id"
                ),
                {**key, "u": user.username, "k": letter.idempotency_key, "p": payload},
            ).scalar_one_or_none()
            if created is None:
                outcome.existing[letter_id] = conn.execute(
                    text(
                        "SELECT id FROM replays WHERE correlation_id = :c AND dead_letter_id = :d"
                        " AND status IN ('pending', 'delivering')"
                    ),
                    key,
                ).scalar_one()
                continue
            outcome.created[letter_id] = created
            conn.execute(
                text(
                    "UPDATE dead_letters SET status = 'replay_pending' "
                    "WHERE correlation_id = :c AND id = :d"
                ),
                key,
            )
            if letter.exception_id is not None:
                edited = (
                    {"payload_edited": True, "original_payload": letter.payload}
                    if payload is not None
                    else {}
                )
                conn.execute(
                    _AUDIT,
                    {
                        "c": letter.correlation_id,
                        "e": letter.exception_id,
                        "actor": user.username,
                        "action": "replay_requested",
                        "before": edited or None,
                        "after": {
                            "replay_id": created,
                            "dead_letter_id": letter.id,
                            **({"payload": payload} if payload is not None else {}),
                        },
                        "comment": None,
                    },
                )
    return outcome


def _refusal(letter, allowed_hosts: frozenset[str], force: bool) -> str | None:
    if letter is None:
        return "no such dead letter"
    if letter.status == "discarded":
        return "the dead letter was discarded"
    if letter.status == "replayed" and not force:
        return "already replayed successfully (request again with force to send it anew)"
    if not target_allowed(letter.target_url, allowed_hosts):
        return (
            f"target {letter.target_url or '(none)'} is not in Q2C_REPLAY_ALLOWED_HOSTS; "
            "a payload is only sent to an allowed host"
        )
    return None

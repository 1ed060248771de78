"""Dead letters and replays: readers for on-call, and the replay request command.

A replay request is idempotent: while a replay of a dead letter is pending or delivering,
asking again (a double click, two engineers at once) returns that same replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, text

from q2c.errors import Q2CError
from q2c.masking import configured
from queries.audit import record, record_exception_event
from queries.exceptions import ActionResult
from queries.roles import require
from queries.search import contains_pattern
from queries.users import allowed_user
from replay.targets import refusal


def list_dead_letters(
    engine: Engine,
    actor: str,
    status: str | None = None,
    search: str | None = None,
    limit: int = 500,
) -> list[dict]:
    """Dead letters, newest first, with their latest replay's status, attempts so far and
    age; on-call only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "dead_letters.view")
        where, params = letter_conditions(status, search)
        rows = conn.execute(
            text(
                "SELECT d.id, d.correlation_id, d.process, d.stage, d.system, d.occurred_at, "
                "greatest(now() - d.occurred_at, interval '0') AS age, "
                "d.target_url, d.method, d.status, d.error_type, d.error_message, "
                "d.exception_id, r.id AS replay_id, r.status AS replay_status, "
                "r.attempts AS replay_attempts, r.response_code, "
                "(SELECT coalesce(sum(a.attempts), 0) FROM replays a "
                " WHERE a.correlation_id = d.correlation_id AND a.dead_letter_id = d.id) "
                "AS attempts "
                "FROM dead_letters d LEFT JOIN LATERAL (SELECT * FROM replays r "
                "WHERE r.correlation_id = d.correlation_id AND r.dead_letter_id = d.id "
                "ORDER BY r.requested_at DESC LIMIT 1) r ON true "
                f"WHERE {where} ORDER BY d.occurred_at DESC LIMIT :limit"
            ),
            {**params, "limit": limit},
        )
        return [_masked_letter(row._mapping) for row in rows]


def _masked_letter(letter: Any) -> dict[str, Any]:
    """A dead letter's row with the texts a system or a sender may have put a secret in
    masked: its error, and its target's query string (`?token=…`; the stored target keeps
    it, for the replay to send)."""
    return configured().row(letter, ("error_message", "target_url", "target_error"))


def letter_conditions(status: str | None, search: str | None) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (on `dead_letters d`) of a dead-letter filter, and its parameters."""
    clauses: list[str] = ["true"]
    params: dict[str, Any] = {}
    if status:
        clauses.append("d.status = :status")
        params["status"] = status
    if search:
        clauses.append(
            # Not the target's query string: it may carry a token, which masking hides.
            "(d.correlation_id ILIKE :q OR split_part(d.target_url, '?', 1) ILIKE :q "
            "OR d.error_message ILIKE :q)"
        )
        params["q"] = contains_pattern(search)
    return " AND ".join(clauses), params


def dead_letter_detail(engine: Engine, actor: str, dead_letter_id: int) -> dict[str, Any]:
    """One dead letter with its payload, headers and replays, secrets masked; on-call only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "dead_letters.view")
        row = conn.execute(
            text("SELECT * FROM dead_letters WHERE id = :id"), {"id": dead_letter_id}
        ).one_or_none()
        if row is None:
            raise Q2CError(f"no dead letter {dead_letter_id}")
        masking = configured()
        detail = {
            **_masked_letter(row._mapping),
            "payload": masking.text(row.payload),
            "headers": masking.headers(row.headers),
        }
        detail["replays"] = [
            _masked_outcome(r._mapping)
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
        return [_masked_outcome(row._mapping) for row in rows]


def _masked_outcome(replay: Any) -> dict[str, Any]:
    """A replay's row with the target's answer and the error masked (a target may echo
    the credentials it was sent)."""
    return configured().row(replay, ("response_excerpt", "error", "target_url"))


@dataclass
class ReplayRequest:
    """Outcome of a request: replays created, replays already under way, refusals."""

    created: dict[int, int] = field(default_factory=dict)  # dead letter → replay
    existing: dict[int, int] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)


def request_replays(
    engine: Engine,
    actor: str,
    dead_letter_ids: Sequence[int],
    allowed_hosts: frozenset[str],
    payload: str | None = None,
    force: bool = False,
) -> ReplayRequest:
    """Queue one replay per dead letter; `payload` replaces the stored one (the original
    stays in the dead letter). `payload` is an edit of the masked payload that
    `dead_letter_detail` shows: every ••• left as shown is sent as its original value. The
    audit trail keeps both payloads masked. A dead letter already replayed successfully is
    refused unless `force`."""
    if payload is not None and len(set(dead_letter_ids)) != 1:
        raise Q2CError("an edited payload stands for one dead letter's: name exactly one")
    with engine.begin() as conn:
        user = allowed_user(conn, actor, "replays.request")
        if payload is not None:
            require(user.username, user.role, "replays.edit_payload")
        return queue_replays(conn, user.username, dead_letter_ids, allowed_hosts, payload, force)


def queue_replays(
    conn: Connection,
    username: str,
    dead_letter_ids: Sequence[int],
    allowed_hosts: frozenset[str],
    payload: str | None = None,
    force: bool = False,
    redrive: tuple[int, float] | None = None,
) -> ReplayRequest:
    """`request_replays` in the caller's transaction, for a user already checked. With
    `redrive` (its id and rate per second), the replays join it, scheduled 1/rate apart."""
    outcome = ReplayRequest()
    letters = {
        row.id: row
        for row in conn.execute(
            text(
                "SELECT id, correlation_id, target_url, target_error, idempotency_key, "
                "exception_id, status, payload FROM dead_letters WHERE id IN :ids "
                "ORDER BY correlation_id, id FOR UPDATE"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": list(dead_letter_ids)},
        )
    }
    masking = configured()
    redrive_id, rate = redrive if redrive is not None else (None, None)
    for letter_id in dead_letter_ids:
        letter = letters.get(letter_id)
        reason = _refusal(letter, allowed_hosts, force)
        if reason:
            outcome.refused[letter_id] = reason
            continue
        assert letter is not None  # _refusal refuses a missing one
        sent = None if payload is None else masking.restore(payload, letter.payload)
        key = {"c": letter.correlation_id, "d": letter.id}
        delay = len(outcome.created) / rate if rate else 0.0
        created = conn.execute(
            text(
                "INSERT INTO replays (correlation_id, dead_letter_id, requested_by, "
                "idempotency_key, payload_override, redrive_id, next_attempt_at) "
                "VALUES (:c, :d, :u, :k, :p, :redrive, now() + make_interval(secs => :delay)) "
                "ON CONFLICT (correlation_id, dead_letter_id) "
                "WHERE status IN ('pending', 'delivering') DO NOTHING RETURNING id"
            ),
            {
                **key,
                "u": username,
                "k": letter.idempotency_key,
                "p": sent,
                "redrive": redrive_id,
                "delay": delay,
            },
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
        edited = (
            {"payload_edited": True, "original_payload": masking.text(letter.payload)}
            if sent is not None
            else {}
        )
        after = {
            "replay_id": created,
            "dead_letter_id": letter.id,
            **({"payload": masking.text(sent)} if sent is not None else {}),
            **({"redrive_id": redrive_id} if redrive_id is not None else {}),
        }
        record_letter_event(
            conn, letter, username, "replay_requested", before=edited or None, after=after
        )
    return outcome


def record_letter_event(
    conn: Connection,
    letter: Any,
    actor: str,
    action: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    comment: str | None = None,
) -> None:
    """An action on a dead letter into an audit trail: its exception's history when it
    has an exception, else the audit log (as `dead_letter.<action>`)."""
    if letter.exception_id is not None:
        record_exception_event(
            conn,
            letter.correlation_id,
            letter.exception_id,
            actor,
            action,
            before=before,
            after=after,
            comment=comment,
        )
    else:
        detail = {"before": before, "after": after, "comment": comment}
        record(
            conn,
            actor,
            f"dead_letter.{action.removeprefix('dead_letter_')}",
            object_type="dead_letter",
            object_id=letter.id,
            detail={key: value for key, value in detail.items() if value},
        )


def _refusal(letter, allowed_hosts: frozenset[str], force: bool) -> str | None:
    if letter is None:
        return "no such dead letter"
    if letter.status == "discarded":
        return "the dead letter was discarded"
    if letter.status == "replayed" and not force:
        # Sending a delivered message again may post it twice: only on purpose, by command.
        return (
            "already replayed successfully; to send it anew on purpose: q2c replay request --force"
        )
    return letter.target_error or refusal(letter.target_url, allowed_hosts)


def discard_dead_letters(
    engine: Engine, actor: str, dead_letter_ids: Sequence[int], reason: str
) -> ActionResult:
    """Give up on dead letters (they will not be replayed), with the reason; audited. Only
    `dead` ones: a letter with a replay under way is cancelled first, a replayed one needs
    nothing."""
    if not reason.strip():
        raise Q2CError("discarding dead letters needs a reason")
    outcome = ActionResult()
    with engine.begin() as conn:
        user = allowed_user(conn, actor, "dead_letters.discard")
        letters = {
            row.id: row
            for row in conn.execute(
                text(
                    "SELECT id, correlation_id, exception_id, status FROM dead_letters "
                    "WHERE id IN :ids ORDER BY correlation_id, id FOR UPDATE"
                ).bindparams(bindparam("ids", expanding=True)),
                {"ids": list(dead_letter_ids)},
            )
        }
        for letter_id in dead_letter_ids:
            letter = letters.get(letter_id)
            if letter is None or letter.status != "dead":
                outcome.skipped[letter_id] = (
                    "no such dead letter" if letter is None else f"it is {letter.status}"
                )
                continue
            conn.execute(
                text(
                    "UPDATE dead_letters SET status = 'discarded' "
                    "WHERE correlation_id = :c AND id = :d"
                ),
                {"c": letter.correlation_id, "d": letter.id},
            )
            record_letter_event(
                conn,
                letter,
                user.username,
                "dead_letter_discarded",
                before={"status": "dead"},
                after={"status": "discarded", "dead_letter_id": letter.id},
                comment=reason,
            )
            outcome.changed.append(letter_id)
    return outcome

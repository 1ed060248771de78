"""Redrives: replay every dead letter a filter matches, at a set rate, with a dry run
first, progress while it runs, and cancel of what is still pending (as the AWS SQS
dead-letter redrive does).

The rate is kept by the schedule, not by a process: the redrive's replays are due 1/rate
seconds apart, so any number of dispatchers together send no faster. Cancelling turns
the replays still `pending` into `cancelled` (their dead letters `dead` again); one a
dispatcher has claimed is already being delivered and finishes as it would have.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from q2c.errors import Q2CError
from queries.audit import record
from queries.replays import ReplayRequest, letter_conditions, queue_replays, record_letter_event
from queries.users import allowed_user

MAX_RATE_PER_SECOND = 1000.0


@dataclass(frozen=True)
class RedrivePreview:
    """What a redrive of the filter would do now: how many dead letters it would replay,
    and how many it would leave, by reason."""

    matching: int
    replayable: list[int]
    refused: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Redrive:
    """A redrive and where it stands: its replays counted by status."""

    id: int
    requested_by: str
    requested_at: Any
    filter: dict[str, Any]
    rate_per_second: float
    total: int
    cancelled_at: Any
    statuses: dict[str, int]

    @property
    def pending(self) -> int:
        return self.statuses.get("pending", 0) + self.statuses.get("delivering", 0)

    @property
    def done(self) -> int:
        return self.total - self.pending


def preview_redrive(
    engine: Engine, actor: str, search: str | None, allowed_hosts: frozenset[str]
) -> RedrivePreview:
    """The dry run: the `dead` letters matching `search`, and which of them a redrive
    would replay (the others refused by the rules of any replay, with why); on-call only."""
    with engine.begin() as conn:
        user = allowed_user(conn, actor, "replays.request")
        ids = _matching(conn, search)
        # The same rules as the real thing, in a transaction that is rolled back.
        savepoint = conn.begin_nested()
        outcome = queue_replays(conn, user.username, ids, allowed_hosts)
        savepoint.rollback()
    refused = Counter(outcome.refused.values())
    if outcome.existing:
        refused["a replay is already under way"] += len(outcome.existing)
    return RedrivePreview(len(ids), list(outcome.created), dict(refused))


def start_redrive(
    engine: Engine,
    actor: str,
    search: str | None,
    allowed_hosts: frozenset[str],
    rate_per_second: float,
) -> tuple[Redrive, ReplayRequest]:
    """Queue a replay of every `dead` letter matching `search`, `rate_per_second` at
    most; audited. On-call only."""
    if not 0 < rate_per_second <= MAX_RATE_PER_SECOND:
        raise Q2CError(f"a redrive's rate is above 0 and at most {MAX_RATE_PER_SECOND:g} a second")
    with engine.begin() as conn:
        user = allowed_user(conn, actor, "replays.request")
        ids = _matching(conn, search)
        criteria = {"status": "dead", "search": search or ""}
        redrive_id = conn.execute(
            text(
                "INSERT INTO redrives (requested_by, filter, rate_per_second, total) "
                "VALUES (:u, :f, :rate, 0) RETURNING id"
            ).bindparams(bindparam("f", type_=JSONB)),
            {"u": user.username, "f": criteria, "rate": rate_per_second},
        ).scalar_one()
        outcome = queue_replays(
            conn, user.username, ids, allowed_hosts, redrive=(redrive_id, rate_per_second)
        )
        conn.execute(
            text("UPDATE redrives SET total = :n WHERE id = :id"),
            {"n": len(outcome.created), "id": redrive_id},
        )
        record(
            conn,
            user.username,
            "redrive.started",
            object_type="redrive",
            object_id=redrive_id,
            detail={
                "filter": criteria,
                "rate_per_second": rate_per_second,
                "queued": len(outcome.created),
                "refused": len(outcome.refused),
                "already_under_way": len(outcome.existing),
            },
        )
    return redrive_status(engine, actor, redrive_id), outcome


def cancel_redrive(engine: Engine, actor: str, redrive_id: int) -> int:
    """Cancel the redrive's replays still pending (their dead letters are `dead` again);
    audited. Returns how many were cancelled. On-call only."""
    with engine.begin() as conn:
        user = allowed_user(conn, actor, "replays.request")
        found = conn.execute(
            text("SELECT id FROM redrives WHERE id = :id FOR UPDATE"), {"id": redrive_id}
        ).scalar_one_or_none()
        if found is None:
            raise Q2CError(f"no redrive {redrive_id}")
        # A replay a dispatcher holds is locked, and once it commits it is `delivering`:
        # this statement then leaves it alone (it re-checks the status after the wait).
        cancelled = conn.execute(
            text(
                "UPDATE replays SET status = 'cancelled', finished_at = now(), "
                "error = 'cancelled by ' || :u WHERE redrive_id = :id AND status = 'pending' "
                "RETURNING correlation_id, dead_letter_id"
            ),
            {"id": redrive_id, "u": user.username},
        ).all()
        for letter in conn.execute(
            text(
                "UPDATE dead_letters d SET status = 'dead' "
                "FROM unnest(CAST(:c AS text[]), CAST(:d AS bigint[])) AS x(correlation_id, id) "
                "WHERE d.correlation_id = x.correlation_id "
                "AND d.id = x.id AND d.status = 'replay_pending' "
                "RETURNING d.id, d.correlation_id, d.exception_id"
            ),
            {
                "c": [row.correlation_id for row in cancelled],
                "d": [row.dead_letter_id for row in cancelled],
            },
        ):
            record_letter_event(
                conn,
                letter,
                user.username,
                "replay_cancelled",
                after={"redrive_id": redrive_id, "dead_letter_id": letter.id},
            )
        conn.execute(
            text(
                "UPDATE redrives SET cancelled_at = coalesce(cancelled_at, now()), "
                "cancelled_by = coalesce(cancelled_by, :u) WHERE id = :id"
            ),
            {"id": redrive_id, "u": user.username},
        )
        record(
            conn,
            user.username,
            "redrive.cancelled",
            object_type="redrive",
            object_id=redrive_id,
            detail={"cancelled": len(cancelled)},
        )
    return len(cancelled)


def redrive_status(engine: Engine, actor: str, redrive_id: int) -> Redrive:
    """One redrive and its replays' statuses; on-call only."""
    redrives = list_redrives(engine, actor, redrive_id=redrive_id)
    if not redrives:
        raise Q2CError(f"no redrive {redrive_id}")
    return redrives[0]


def list_redrives(
    engine: Engine, actor: str, limit: int = 20, redrive_id: int | None = None
) -> list[Redrive]:
    """The latest redrives (or the one `redrive_id`), newest first; on-call only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "dead_letters.view")
        rows = conn.execute(
            text(
                "SELECT r.id, r.requested_by, r.requested_at, r.filter, "
                "r.rate_per_second::float8 AS rate_per_second, r.total, r.cancelled_at, "
                "coalesce((SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*) AS n "
                "FROM replays p WHERE p.redrive_id = r.id GROUP BY status) s), '{}') AS statuses "
                "FROM redrives r WHERE (CAST(:id AS bigint) IS NULL OR r.id = :id) "
                "ORDER BY r.id DESC LIMIT :limit"
            ),
            {"id": redrive_id, "limit": limit},
        )
        return [Redrive(**row._mapping) for row in rows]


def matching_letters(engine: Engine, actor: str, search: str | None) -> list[int]:
    """Every `dead` letter matching `search`, however many; on-call only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "dead_letters.view")
        return _matching(conn, search)


def _matching(conn: Connection, search: str | None) -> list[int]:
    """Every `dead` letter matching `search`, oldest first (the order they are redriven)."""
    where, params = letter_conditions("dead", search)
    rows = conn.execute(
        text(f"SELECT d.id FROM dead_letters d WHERE {where} ORDER BY d.occurred_at, d.id"),
        params,
    )
    return list(rows.scalars())

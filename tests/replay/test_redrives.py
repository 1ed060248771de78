"""Redrives replay every dead letter a filter matches: a dry run counts first and changes
nothing, the rate is kept by the schedule, progress is counted, and cancel stops what is
still pending and nothing else. Discarding gives up on dead letters, with a reason."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine

from q2c.errors import Q2CError
from queries.redrives import cancel_redrive, preview_redrive, redrive_status, start_redrive
from queries.replays import discard_dead_letters, request_replays
from queries.roles import PermissionDenied

ALLOWED = frozenset({"127.0.0.1"})


@pytest.fixture
def letters(dead_letters) -> list[int]:
    """Five dead letters of a closed period, one of them to a target outside the allow-list,
    and one of another kind."""
    good = dead_letters(4)
    outside = dead_letters(1, first=10, target="http://erp.example.com/erp/invoices/X")
    other = dead_letters(1, first=20, message="schema mismatch")
    return good + outside + other


def _statuses(db: psycopg.Connection) -> list[tuple]:
    return db.execute("SELECT status, count(*) FROM dead_letters GROUP BY 1 ORDER BY 1").fetchall()


def test_the_dry_run_counts_and_changes_nothing(
    engine: Engine, db: psycopg.Connection, letters: list[int]
) -> None:
    preview = preview_redrive(engine, "ops", "period", ALLOWED)

    assert preview.matching == 5
    assert sorted(preview.replayable) == sorted(letters[:4])
    assert preview.refused == {
        "target http://erp.example.com/erp/invoices/X is not in Q2C_REPLAY_ALLOWED_HOSTS": 1
    }
    assert db.execute("SELECT count(*) FROM replays").fetchone() == (0,)
    assert _statuses(db) == [("dead", 6)]


def test_a_redrive_is_scheduled_at_its_rate_and_cancel_stops_only_the_pending(
    engine: Engine, db: psycopg.Connection, letters: list[int], dispatcher, targets
) -> None:
    state, _ = targets
    redrive, outcome = start_redrive(engine, "ops", "period", ALLOWED, rate_per_second=0.01)
    gaps = db.execute(
        "SELECT extract(epoch FROM next_attempt_at - lag(next_attempt_at) OVER (ORDER BY id)) "
        "FROM replays WHERE redrive_id = %s ORDER BY id",
        (redrive.id,),
    ).fetchall()
    report = dispatcher.run_once()  # only the first is due: the next in 100 s

    cancelled = cancel_redrive(engine, "ops2", redrive.id)
    status = redrive_status(engine, "ops", redrive.id)

    assert (redrive.total, len(outcome.created), len(outcome.refused)) == (4, 4, 1)
    assert [float(gap) for (gap,) in gaps[1:]] == [100.0, 100.0, 100.0]
    assert (report.claimed, len(report.succeeded)) == (1, 1)
    assert len(state.applied) == 1
    assert cancelled == 3
    assert status.statuses == {"succeeded": 1, "cancelled": 3}
    assert (status.pending, status.done) == (0, 4)
    assert status.cancelled_at is not None
    assert _statuses(db) == [("dead", 5), ("replayed", 1)]
    assert dispatcher.run_once().claimed == 0  # nothing left to send
    assert db.execute(
        "SELECT actor, action, detail->>'cancelled' FROM audit_log WHERE action LIKE 'redrive.%' "
        "ORDER BY id"
    ).fetchall() == [("ops", "redrive.started", None), ("ops2", "redrive.cancelled", "3")]
    assert db.execute(
        "SELECT count(*) FROM exception_events WHERE action = 'replay_cancelled'"
    ).fetchone() == (3,)


def test_a_letter_already_under_way_is_not_queued_twice(
    engine: Engine, db: psycopg.Connection, letters: list[int]
) -> None:
    request_replays(engine, "ops", letters[:1], ALLOWED)

    redrive, _ = start_redrive(engine, "ops", "period", ALLOWED, rate_per_second=5)

    assert redrive.total == 3  # the one already pending is not in the filter's dead ones
    assert db.execute("SELECT count(*) FROM replays WHERE status = 'pending'").fetchone() == (4,)


def test_rates_outside_the_bounds_are_refused(engine: Engine, letters: list[int]) -> None:
    for rate in (0, -1, 1001):
        with pytest.raises(Q2CError, match="rate is above 0 and at most 1000"):
            start_redrive(engine, "ops", None, ALLOWED, rate_per_second=rate)


def test_discarding_needs_a_reason_and_takes_only_dead_letters(
    engine: Engine, db: psycopg.Connection, letters: list[int]
) -> None:
    request_replays(engine, "ops", letters[:1], ALLOWED)
    with pytest.raises(Q2CError, match="needs a reason"):
        discard_dead_letters(engine, "ops", letters[1:2], "  ")

    result = discard_dead_letters(engine, "ops", letters[:3], "duplicate of INV-R9, posted by hand")

    assert result.changed == letters[1:3]
    assert result.skipped == {letters[0]: "it is replay_pending"}
    assert _statuses(db) == [("dead", 3), ("discarded", 2), ("replay_pending", 1)]
    assert (
        db.execute(
            "SELECT actor, comment FROM exception_events WHERE action = 'dead_letter_discarded'"
        ).fetchall()
        == [("ops", "duplicate of INV-R9, posted by hand")] * 2
    )
    assert preview_redrive(engine, "ops", "period", ALLOWED).matching == 2  # 4 + 1 - 3


def test_finance_may_neither_redrive_nor_discard(engine: Engine, letters: list[int]) -> None:
    with pytest.raises(PermissionDenied, match="requesting replays needs the oncall role"):
        start_redrive(engine, "fin", None, ALLOWED, 1)
    with pytest.raises(PermissionDenied, match="discarding dead letters needs the oncall role"):
        discard_dead_letters(engine, "fin", letters, "no")

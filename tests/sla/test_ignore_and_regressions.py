"""Ignores that end by themselves (a date passed, the failure recurring) and regressions (a
failure a person had resolved, failing again): each with the system's word in the history.
Times are passed in: the evaluator's `now`, the spans' own moments."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import Engine

from q2c.errors import Q2CError
from queries.exceptions import ExceptionFilter, assign, close_exceptions, list_exceptions
from sla.evaluate import EvaluationReport, evaluate
from sla.policy import Policy
from tests.support.otlp import BASE_NS, NS, stage_span, traces_request


def _soon(seconds: float = 60) -> float:
    """`at_s` for stage_span of a moment `seconds` from now (after anything done so far)."""
    return (time.time_ns() - BASE_NS) / NS + seconds


def _failure(invoice: str, at_s: float, seq: int):
    return traces_request(
        stage_span(
            invoice,
            "invoice_posting",
            "invoice_recorded",
            "erp",
            at_s=at_s,
            seq=seq,
            error="ledger closed",
        )
    )


@pytest.fixture
def evaluate_at(db_url: str, policy: Policy) -> Callable[[datetime | None], EvaluationReport]:
    """One evaluation as if it ran at `now` (None: the clock's)."""

    def run(now: datetime | None = None) -> EvaluationReport:
        with psycopg.connect(db_url, autocommit=True) as conn:
            return evaluate(conn, policy, now)

    return run


def _exceptions(db: psycopg.Connection, invoice: str) -> list[tuple]:
    return db.execute(
        "SELECT id, status, occurrences, regressed_from FROM exceptions "
        "WHERE correlation_id = %s ORDER BY id",
        (invoice,),
    ).fetchall()


def _system_events(db: psycopg.Connection, exception_id: int) -> list[tuple]:
    return db.execute(
        "SELECT action, comment FROM exception_events WHERE exception_id = %s "
        "AND actor = 'system' ORDER BY id",
        (exception_id,),
    ).fetchall()


def test_an_ignore_until_a_date_reopens_once_the_date_has_passed(
    send, engine: Engine, users, db: psycopg.Connection, evaluate_at
) -> None:
    send(_failure("INV-D0", 1, 100))
    [(target, *_)] = _exceptions(db, "INV-D0")
    until = datetime(2099, 1, 1, tzinfo=UTC)
    close_exceptions(engine, "fin", [target], "ignored", "month-end freeze", until=until)

    before = evaluate_at(until - timedelta(seconds=1))
    still = _exceptions(db, "INV-D0")
    after = evaluate_at(until)
    again = evaluate_at(until + timedelta(days=1))

    assert (before.ignores_ended, after.ignores_ended, again.ignores_ended) == (0, 1, 0)
    assert still == [(target, "ignored", 1, None)]
    assert _exceptions(db, "INV-D0") == [(target, "open", 1, None)]
    assert db.execute(
        "SELECT resolution, resolved_at, ignored_until FROM exceptions WHERE id = %s", (target,)
    ).fetchone() == (None, None, None)
    assert _system_events(db, target) == [
        ("reopened", "ignored until 2099-01-01T00:00:00Z, which has passed")
    ]


def test_an_owned_exception_whose_ignore_ends_or_failure_recurs_is_its_owner_s_again(
    send, engine: Engine, users, db: psycopg.Connection, evaluate_at
) -> None:
    send(_failure("INV-D9", 1, 190))
    [(target, *_)] = _exceptions(db, "INV-D9")
    until = datetime(2099, 1, 1, tzinfo=UTC)
    assign(engine, "fin", [target], "ops")
    close_exceptions(engine, "fin", [target], "ignored", "month-end freeze", until=until)

    send(_failure("INV-D8", 10, 180))
    [(recurring, *_)] = _exceptions(db, "INV-D8")
    assign(engine, "fin", [recurring], "ops")
    close_exceptions(engine, "fin", [recurring], "ignored", "flaky", until_recurs=True)

    evaluate_at(until)
    send(_failure("INV-D8", 40, 181))  # recurs

    owned = "SELECT status, owner FROM exceptions WHERE id = %s"
    assert db.execute(owned, (target,)).fetchone() == ("assigned", "ops")
    assert db.execute(owned, (recurring,)).fetchone() == ("assigned", "ops")


def test_an_expired_ignore_leaves_a_newer_open_exception_of_its_failure_alone(
    send, engine: Engine, users, db: psycopg.Connection, evaluate_at
) -> None:
    send(_failure("INV-D1", 1, 200))
    [(ignored, *_)] = _exceptions(db, "INV-D1")
    until = datetime(2099, 1, 1, tzinfo=UTC)
    close_exceptions(engine, "fin", [ignored], "ignored", "freeze", until=until)
    send(_failure("INV-D1", 50, 210))  # ignored for a while: the failure opens anew

    report = evaluate_at(until)

    [_, (newer, *_)] = _exceptions(db, "INV-D1")
    assert report.ignores_ended == 1
    assert _exceptions(db, "INV-D1") == [(ignored, "ignored", 1, None), (newer, "open", 1, None)]
    assert _system_events(db, ignored) == [
        (
            "ignore_ended",
            f"ignored until 2099-01-01T00:00:00Z, which has passed; exception {newer} is open "
            "for the same failure",
        )
    ]


def test_an_ignore_until_recurs_reopens_at_the_next_failure(
    send, engine: Engine, users, db: psycopg.Connection
) -> None:
    send(_failure("INV-R0", 10, 300), _failure("INV-F0", 10, 310))
    [(target, *_)] = _exceptions(db, "INV-R0")
    [(for_good, *_)] = _exceptions(db, "INV-F0")
    close_exceptions(engine, "fin", [target], "ignored", "flaky", until_recurs=True)
    close_exceptions(engine, "fin", [for_good], "ignored", "test invoice")

    send(_failure("INV-R0", 5, 320))  # reported late, and older than what it had: no recurrence
    late = _exceptions(db, "INV-R0")
    send(_failure("INV-R0", 40, 330), _failure("INV-F0", 40, 340))

    assert late == [(target, "ignored", 2, None)]
    assert _exceptions(db, "INV-R0") == [(target, "open", 3, None)]
    assert db.execute(
        "SELECT resolution, resolved_at, ignored_until_recurs FROM exceptions WHERE id = %s",
        (target,),
    ).fetchone() == (None, None, False)
    [(action, why)] = _system_events(db, target)
    assert action == "reopened" and why.startswith("failed again at ")
    assert why.endswith("it was ignored until its failure recurs")
    # Ignored for good: the failure's new occurrence is an exception of its own, as before.
    [(_, status, _, _), (_, new_status, _, _)] = _exceptions(db, "INV-F0")
    assert (status, new_status) == ("ignored", "open")


def test_an_ignore_lasts_until_one_thing_to_come(engine: Engine, users) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(Q2CError, match="a moment to come"):
        close_exceptions(engine, "fin", [1], "ignored", "why", until=past)
    with pytest.raises(Q2CError, match="not both"):
        close_exceptions(
            engine, "fin", [1], "ignored", "why", until=past + timedelta(days=2), until_recurs=True
        )
    with pytest.raises(Q2CError, match="only an ignore"):
        close_exceptions(engine, "fin", [1], "resolved", "why", until_recurs=True)


def test_a_resolved_failure_that_fails_again_is_a_regression(
    send, engine: Engine, users, db: psycopg.Connection, evaluate_at
) -> None:
    send(_failure("INV-G0", 1, 400))
    evaluate_at()
    [(resolved, *_)] = _exceptions(db, "INV-G0")
    close_exceptions(engine, "fin", [resolved], "resolved", "ledger reopened")
    send(_failure("INV-G0", _soon(), 410))

    report = evaluate_at()
    again = evaluate_at()

    [_, (regressed, *_)] = _exceptions(db, "INV-G0")
    assert (report.regressed, again.regressed) == (1, 0)
    assert _exceptions(db, "INV-G0") == [
        (resolved, "resolved", 1, None),
        (regressed, "open", 1, resolved),
    ]
    [(action, why)] = _system_events(db, regressed)
    assert action == "regressed" and why.startswith(f"exception {resolved} was resolved at ")
    listed = list_exceptions(engine, ExceptionFilter(regressed=True))
    assert [(row["id"], row["regressed"], row["regressed_from"]) for row in listed] == [
        (regressed, True, resolved)
    ]


def test_a_resolved_group_regresses_in_another_transaction_only_once_all_was_resolved(
    send, engine: Engine, users, db: psycopg.Connection, evaluate_at
) -> None:
    send(_failure("INV-H0", 1, 500), _failure("INV-H1", 2, 510))
    evaluate_at()
    [(first, *_)] = _exceptions(db, "INV-H0")
    [(second, *_)] = _exceptions(db, "INV-H1")
    close_exceptions(engine, "fin", [first], "resolved", "fixed the mapping")
    send(_failure("INV-H2", _soon(), 520))  # INV-H1 is still open: the group is not resolved
    evaluate_at()
    close_exceptions(engine, "fin", [second], "resolved", "fixed the mapping")
    send(_failure("INV-H3", _soon(), 530))
    evaluate_at()

    assert _exceptions(db, "INV-H2")[0][3] is None
    assert _exceptions(db, "INV-H3")[0][3] == second

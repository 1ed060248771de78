"""Triage commands move exceptions through their statuses: assign, unassign, start work,
resolve, reopen. Each changes only what it may, says why it left the others, and leaves
one audit row per change."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine

from q2c.errors import Q2CError
from queries.exceptions import (
    ExceptionFilter,
    assign,
    close_exceptions,
    list_exceptions,
    reopen,
    start_work,
    unassign,
)
from tests.support.otlp import stage_span, traces_request


@pytest.fixture
def ids(send, engine: Engine, users: dict[str, str]) -> list[int]:
    """Three open exceptions of three invoices."""
    send(
        traces_request(
            *(
                stage_span(
                    f"INV-C{n}",
                    "invoice_posting",
                    "invoice_recorded",
                    "erp",
                    at_s=n,
                    seq=10 + n,
                    error="ledger closed",
                )
                for n in range(3)
            )
        )
    )
    return sorted(row["id"] for row in list_exceptions(engine, ExceptionFilter()))


def _states(db: psycopg.Connection, ids: list[int]) -> list[tuple]:
    return db.execute(
        "SELECT status, owner, resolution, resolved_at IS NOT NULL FROM exceptions "
        "WHERE id = ANY (%s) ORDER BY id",
        (ids,),
    ).fetchall()


def test_unassign_takes_exceptions_back_to_the_queue(
    engine: Engine, db: psycopg.Connection, ids: list[int]
) -> None:
    assign(engine, "fin", ids[:2], "fin")
    start_work(engine, "fin", ids[1:2])

    result = unassign(engine, "fin", ids)

    assert result.changed == ids[:2]
    assert result.skipped == {ids[2]: "already open"}
    assert _states(db, ids) == [("open", None, None, False)] * 3
    assert db.execute(
        "SELECT action, before, after FROM exception_events WHERE exception_id = %s "
        "AND action = 'unassigned'",
        (ids[1],),
    ).fetchall() == [
        ("unassigned", {"owner": "fin", "status": "in_progress"}, {"owner": None, "status": "open"})
    ]


def test_reopen_opens_what_a_person_closed_with_a_reason(
    engine: Engine, db: psycopg.Connection, ids: list[int]
) -> None:
    close_exceptions(engine, "fin", ids[:1], "resolved", "credit note issued")
    close_exceptions(engine, "fin", ids[1:2], "ignored", "test invoice")

    with pytest.raises(Q2CError, match="needs a reason"):
        reopen(engine, "fin", ids, " ")
    result = reopen(engine, "fin", ids, "customer still sees the invoice")

    assert result.changed == ids[:2]
    assert result.skipped == {ids[2]: "already open"}
    assert _states(db, ids) == [("open", None, None, False)] * 3
    [(comment,)] = db.execute(
        "SELECT comment FROM exception_events WHERE exception_id = %s AND action = 'reopened'",
        (ids[0],),
    ).fetchall()
    assert comment == "customer still sees the invoice"


def test_assigning_to_the_owner_it_has_changes_and_records_nothing(
    engine: Engine, db: psycopg.Connection, ids: list[int]
) -> None:
    assign(engine, "fin", ids[:1], "ops")
    again = assign(engine, "fin", ids[:1], "ops")

    assert again.changed == [] and again.skipped == {ids[0]: "already assigned to ops"}
    assert db.execute(
        "SELECT count(*) FROM exception_events WHERE exception_id = %s AND action = 'assigned'",
        (ids[0],),
    ).fetchone() == (1,)


def test_an_owned_exception_reopened_is_its_owner_s_still_and_can_be_unassigned(
    engine: Engine, db: psycopg.Connection, ids: list[int]
) -> None:
    assign(engine, "fin", ids[:1], "ops")
    close_exceptions(engine, "fin", ids[:1], "resolved", "credit note issued")

    reopen(engine, "fin", ids[:1], "customer still sees the invoice")
    reopened = _states(db, ids[:1])
    unassigned = unassign(engine, "fin", ids[:1])

    assert reopened == [("assigned", "ops", None, False)]
    assert unassigned.changed == ids[:1] and _states(db, ids[:1]) == [("open", None, None, False)]


def test_an_exception_whose_failure_is_open_again_elsewhere_stays_closed(
    send, engine: Engine, db: psycopg.Connection, ids: list[int]
) -> None:
    close_exceptions(engine, "fin", ids[:1], "resolved", "fixed")
    # The same failure again: telemetry leaves the person-closed one be and opens a new one.
    send(
        traces_request(
            stage_span(
                "INV-C0",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=100,
                seq=500,
                error="ledger closed",
            )
        )
    )
    [newer] = [
        row["id"]
        for row in list_exceptions(engine, ExceptionFilter(search="INV-C0"))
        if row["id"] != ids[0]
    ]

    result = reopen(engine, "fin", ids[:1], "not fixed")

    assert result.changed == []
    assert result.skipped == {ids[0]: f"exception {newer} is open for the same failure"}
    assert _states(db, ids[:1]) == [("resolved", None, "fixed", True)]


def test_auto_resolved_exceptions_are_not_reopened_by_hand(
    engine: Engine, db: psycopg.Connection, ids: list[int]
) -> None:
    db.execute("UPDATE exceptions SET status = 'auto_resolved' WHERE id = %s", (ids[0],))

    result = reopen(engine, "fin", ids[:1], "why")

    assert result.skipped == {ids[0]: "already auto_resolved"}

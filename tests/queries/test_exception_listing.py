"""The exceptions list pages through every match and says how many there are; the export
writes every matching exception, not the page on screen."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event

from queries.exceptions import (
    ExceptionFilter,
    count_exceptions,
    export_exceptions,
    group_exceptions,
    list_exceptions,
)
from queries.roles import PermissionDenied
from tests.support.otlp import stage_span, traces_request

FAILURES = 1_234


def _send_failures(send) -> None:
    spans = [
        stage_span(
            f"INV-L{n:05}",
            "invoice_posting",
            "invoice_recorded",
            "erp",
            at_s=n / 10,
            seq=100_000 + 10 * n,
            error=f"card 4111111111111111 declined for invoice {n}",
            invoice_id=f"INV-L{n:05}",
        )
        for n in range(FAILURES)
    ]
    for start in range(0, FAILURES, 400):
        send(traces_request(*spans[start : start + 400]))


def test_pages_cover_every_match_once_and_the_count_says_how_many(send, engine: Engine) -> None:
    _send_failures(send)
    everything = ExceptionFilter()

    pages = [list_exceptions(engine, everything, 500, offset) for offset in (0, 500, 1000, 1500)]

    assert count_exceptions(engine, everything) == FAILURES
    assert [len(page) for page in pages] == [500, 500, 234, 0]
    ids = [row["id"] for page in pages for row in page]
    assert len(set(ids)) == FAILURES
    assert count_exceptions(engine, ExceptionFilter(search="inv-l0001")) == 10  # 10…19


def test_the_export_writes_every_matching_exception_masked(
    send, engine: Engine, users: dict[str, str]
) -> None:
    _send_failures(send)
    out = io.StringIO()
    columns = ["id", "invoice_id", "message"]

    written = export_exceptions(engine, "fin", ExceptionFilter(), columns, out)

    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert written == len(rows) == FAILURES
    assert {row["invoice_id"] for row in rows} == {f"INV-L{n:05}" for n in range(FAILURES)}
    assert not any("4111111111111111" in row["message"] for row in rows)
    assert [row["id"] for row in rows[:500]] == [
        str(row["id"]) for row in list_exceptions(engine, ExceptionFilter())
    ]
    refused = io.StringIO()
    with pytest.raises(PermissionDenied):  # the role is checked when the export is made
        export_exceptions(engine, "cio", ExceptionFilter(), columns, refused)
    assert refused.getvalue() == ""


def test_largest_amount_pages_run_down_the_amounts_ties_by_id_and_none_last(
    send, engine: Engine
) -> None:
    amounts = [120.0, None, 75.5, 120.0, 3000.0, None, 75.5, 0.25]
    spans = []
    for n, amount in enumerate(amounts):
        business = {"invoice_id": f"INV-A{n}", "currency": "EUR"}
        if amount is not None:
            business["amount"] = amount
        spans.append(
            stage_span(
                f"INV-A{n}",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=n,
                seq=200_000 + 10 * n,
                error=f"posting {n} refused",
                **business,
            )
        )
    send(traces_request(*spans))

    pages = [
        list_exceptions(engine, ExceptionFilter(), 3, offset, "largest amount")
        for offset in (0, 3, 6)
    ]

    rows = [(row["amount"], row["id"]) for page in pages for row in page]
    assert [len(page) for page in pages] == [3, 3, 2]
    assert [amount for amount, _ in rows] == [3000.0, 120.0, 120.0, 75.5, 75.5, 0.25, None, None]
    assert rows == sorted(rows, key=lambda row: (row[0] is None, -(row[0] or 0), row[1]))


def _plans(
    engine: Engine, db: psycopg.Connection, read: Callable[[], object], *, sorts: bool
) -> str:
    """The plans of the statements `read` runs, made as if reading a table through an
    index were the one cheap way to read it (and, unless `sorts`, as if sorting were
    dear): the plans name the indexes that serve what the statements read."""
    statements: list[tuple[str, Any]] = []

    def note(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        read()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    db.execute("SET enable_seqscan = off")
    db.execute("SET enable_bitmapscan = off")
    db.execute(f"SET enable_sort = {'on' if sorts else 'off'}")
    return "\n".join(
        row[0]
        for statement, parameters in statements
        for row in db.execute(f"EXPLAIN {statement}", parameters)
    )


def test_the_open_backlogs_costliest_orders_and_its_groups_are_read_from_indexes(
    send, engine: Engine, db: psycopg.Connection, owner_db: psycopg.Connection
) -> None:
    _send_failures(send)
    owner_db.execute("VACUUM ANALYZE exceptions")  # as autovacuum keeps it: index-only reads
    everything = ExceptionFilter()

    urgent = _plans(engine, db, lambda: list_exceptions(engine, everything, 500, 1000), sorts=False)
    largest = _plans(
        engine,
        db,
        lambda: list_exceptions(engine, everything, 500, 1000, "largest amount"),
        sorts=False,
    )
    # An aggregate needs no order: what matters is that one narrow index holds it all.
    groups = _plans(engine, db, lambda: group_exceptions(engine, everything), sorts=True)

    assert "Index Only Scan using exceptions_open_urgency_idx" in urgent
    assert "Index Only Scan using exceptions_open_amount_idx" in largest
    assert "Index Only Scan using exceptions_open_amount_idx" in groups


def test_reconciliation_breaks_are_told_apart_by_where_they_were_found(
    db: psycopg.Connection, engine: Engine
) -> None:
    db.execute(
        "INSERT INTO exceptions (correlation_id, process, stage, system, kind, fingerprint, "
        "first_seen, last_seen) VALUES "
        "('INV-1', 'invoice_posting', 'invoice_recorded', 'erp', 'error', 'f1', now(), now()),"
        "('INV-2', 'invoice_posting', 'invoice_recorded', 'erp', 'reconciliation', 'f2', "
        " now(), now()),"
        "('INV-3', NULL, 'reconcile:invoices', 'erp', 'reconciliation', 'f3', now(), now())"
    )

    def found(**filters: Any) -> list[str]:
        rows = list_exceptions(engine, ExceptionFilter(**filters), 10, 0)
        return sorted(row["correlation_id"] for row in rows)

    assert found(kind="reconciliation") == ["INV-2", "INV-3"]
    assert found(reconciled_in="telemetry") == ["INV-2"]
    assert found(reconciled_in="records") == ["INV-3"]

"""The reconciliation readers (runs, accuracy per run and source pair, breaks filtered,
one break side by side with its exception and transaction) and accepting a difference:
finance_ops and up, a reason, audited, the exception resolved, not raised again while the
records are unchanged."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import Engine

from q2c.errors import Q2CError
from queries.reconciliation import (
    BreakFilter,
    accept_difference,
    accuracy_trend,
    break_detail,
    list_breaks,
    list_runs,
)
from queries.roles import PermissionDenied
from tests.support.otlp import stage_span, traces_request
from tests.support.reconciling import NOW, billing, erp


@pytest.fixture
def reconciled(exports, reconcile, users: dict[str, str]) -> int:
    """A run of four invoices: one agreeing, one missing in the ERP, one whose tax and
    currency differ, one twice in billing; its id."""
    exports(
        [billing("INV-1"), billing("INV-2"), billing("INV-3"), billing("INV-4"), billing("INV-4")],
        [erp("INV-1"), erp("INV-3", taxTotal=20.5, currencyCode="USD"), erp("INV-4")],
    )
    report = reconcile()
    assert report.status == "succeeded" and report.run_id is not None
    return report.run_id


def test_runs_and_accuracy_per_run_and_pair(engine: Engine, reconciled: int) -> None:
    (run,) = list_runs(engine, "fin")
    assert (run["run_id"], run["status"], run["checked"], run["matched"]) == (
        reconciled,
        "succeeded",
        4,
        1,
    )
    assert run["accuracy"] == 0.25

    trend = accuracy_trend(engine, "fin", "invoices")

    assert [(r["source_a"], r["source_b"], r["checked"], r["matched"]) for r in trend] == [
        (None, None, 4, 1),
        ("billing", "erp", 4, 1),
    ]
    assert accuracy_trend(engine, "fin", since=datetime.now(UTC) + timedelta(hours=1)) == []


def test_a_limited_trend_keeps_the_newest_runs(engine: Engine, exports, reconcile, users) -> None:
    exports([billing("INV-1")], [erp("INV-1")])
    runs = [reconcile().run_id for _ in range(3)]

    trend = accuracy_trend(engine, "fin", "invoices", limit=4)  # two rows a run

    assert [row["run_id"] for row in trend] == [runs[1], runs[1], runs[2], runs[2]]


def test_a_failed_run_says_why_and_has_no_accuracy(
    engine: Engine, exports, reconcile, users: dict[str, str]
) -> None:
    exports([billing("INV-1", total="lots")], [erp("INV-1")])
    reconcile()

    (run,) = list_runs(engine, "fin")
    assert run["status"] == "failed" and "amount 'lots' is not a number" in run["error"]
    assert run["error_at"] == "billing.csv line 2"
    assert accuracy_trend(engine, "fin") == []


def test_breaks_are_filtered_by_kind_field_and_key(engine: Engine, reconciled: int) -> None:
    every = list_breaks(engine, "fin")
    assert [(b["key"], b["break_type"]) for b in every] == [
        ("INV-2", "missing_in:erp"),
        ("INV-3", "mismatch:currency"),
        ("INV-3", "mismatch:tax_amount"),
        ("INV-4", "duplicate_in:billing"),
    ]

    def keys(**filters: str) -> list[tuple[str, str]]:
        rows = list_breaks(engine, "fin", filters=BreakFilter(**filters))
        return [(b["key"], b["break_type"]) for b in rows]

    assert keys(kind="mismatch") == [
        ("INV-3", "mismatch:currency"),
        ("INV-3", "mismatch:tax_amount"),
    ]
    assert keys(field="currency") == [("INV-3", "mismatch:currency")]
    assert keys(search="inv-4") == [("INV-4", "duplicate_in:billing")]
    assert keys(reconciliation="payments") == []
    assert keys(run_id=str(reconciled + 1)) == []  # type: ignore[arg-type]


def test_one_break_has_the_records_side_by_side_and_the_differing_fields(
    engine: Engine, reconciled: int
) -> None:
    detail = break_detail(engine, "fin", reconciled, "INV-3", "mismatch:currency")

    assert detail is not None
    assert detail["differing"] == ["currency", "tax_amount"]
    assert detail["records"]["billing"][0]["currency"] == "EUR"
    assert detail["records"]["erp"][0]["currency"] == "USD"
    assert detail["records"]["billing"][0]["_at"] == "billing.csv line 4"
    assert (
        detail["exception_status"] == "open" and "currency differs" in detail["exception_message"]
    )
    assert detail["has_transaction"] is False  # telemetry never saw INV-3
    assert break_detail(engine, "fin", reconciled, "INV-1", "mismatch:currency") is None


def test_a_break_links_to_the_transaction_telemetry_saw(
    engine: Engine, exports, reconcile, send, users: dict[str, str]
) -> None:
    send(
        traces_request(
            stage_span(
                "corr-inv-7",
                "invoice_posting",
                "invoice_posted",
                "billing",
                at_s=1,
                seq=100,
                invoice_id="INV-7",
            )
        )
    )
    exports([billing("INV-7")], [])
    run_id = reconcile().run_id
    assert run_id is not None

    detail = break_detail(engine, "fin", run_id, "INV-7", "missing_in:erp")

    assert detail is not None and detail["has_transaction"] is True
    assert detail["correlation_id"] == "corr-inv-7"
    assert detail["transaction_process"] == "invoice_posting"


def test_viewers_are_refused(engine: Engine, reconciled: int) -> None:
    for read in (list_runs, accuracy_trend, list_breaks):
        with pytest.raises(PermissionDenied, match="finance_ops"):
            read(engine, "cio")
    with pytest.raises(PermissionDenied, match="finance_ops"):
        break_detail(engine, "cio", reconciled, "INV-2", "missing_in:erp")
    with pytest.raises(PermissionDenied, match="accepting a known reconciliation difference"):
        accept_difference(engine, "cio", reconciled, "INV-2", "missing_in:erp", "known")


def test_accepting_resolves_the_exception_audits_and_holds_while_records_are_unchanged(
    engine: Engine, db: psycopg.Connection, exports, reconcile, reconciled: int
) -> None:
    with pytest.raises(Q2CError, match="needs a reason"):
        accept_difference(engine, "fin", reconciled, "INV-3", "mismatch:tax_amount", "  ")
    with pytest.raises(Q2CError, match="no break"):
        accept_difference(engine, "fin", reconciled, "INV-1", "mismatch:tax_amount", "known")
    before = break_detail(engine, "fin", reconciled, "INV-3", "mismatch:tax_amount")
    assert before is not None

    done = accept_difference(
        engine, "fin", reconciled, "INV-3", "mismatch:tax_amount", "ERP rounds tax per line"
    )

    assert done.resolved_exception_id == before["exception_id"]
    status, resolution = db.execute(
        "SELECT status, resolution FROM exceptions WHERE id = %s", (before["exception_id"],)
    ).fetchone() or (None, None)
    assert (status, resolution) == ("resolved", "ERP rounds tax per line")
    assert db.execute(
        "SELECT actor, detail->>'reason' FROM audit_log WHERE action = 'reconciliation.accepted'"
    ).fetchall() == [("fin", "ERP rounds tax per line")]
    assert db.execute(
        "SELECT actor, comment FROM exception_events "
        "WHERE exception_id = %s AND action = 'resolved'",
        (before["exception_id"],),
    ).fetchall() == [("fin", "ERP rounds tax per line")]
    after = break_detail(engine, "fin", reconciled, "INV-3", "mismatch:tax_amount")
    assert after is not None and after["accepted_reason"] == "ERP rounds tax per line"
    with pytest.raises(Q2CError, match="already accepted"):
        accept_difference(engine, "fin", reconciled, "INV-3", "mismatch:tax_amount", "again")

    # The same records again: the break is recorded accepted, no exception is opened.
    again = reconcile(now=NOW + timedelta(minutes=15)).run_id
    rows = list_breaks(engine, "fin", filters=BreakFilter(run_id=again, field="tax_amount"))
    assert [(b["accepted"], b["exception_id"]) for b in rows] == [(True, None)]
    # The records change: the difference is new, and raised again.
    exports([billing("INV-3")], [erp("INV-3", taxTotal=21.0, currencyCode="USD")])
    changed = reconcile(now=NOW + timedelta(minutes=30)).run_id
    rows = list_breaks(engine, "fin", filters=BreakFilter(run_id=changed, field="tax_amount"))
    assert [b["accepted"] for b in rows] == [False] and rows[0]["exception_id"] is not None


def test_two_acceptances_at_once_record_one(
    engine: Engine, db: psycopg.Connection, reconciled: int
) -> None:
    def accept(reason: str) -> str:
        try:
            accept_difference(engine, "fin", reconciled, "INV-2", "missing_in:erp", reason)
        except Q2CError as exc:
            return str(exc)
        return "accepted"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(accept, ["first", "second"]))

    assert outcomes == ["accepted", "the break missing_in:erp of INV-2 is already accepted"]
    assert db.execute("SELECT count(*) FROM reconciliation_acceptances").fetchone() == (1,)
    assert db.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'reconciliation.accepted'"
    ).fetchone() == (1,)

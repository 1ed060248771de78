"""Redelivered and reordered batches leave every count and derived row as one in-order
delivery would."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import psycopg

from tests.support.otlp import stage_span, traces_request
from tests.support.scenario import IN_ORDER, PROTOBUF
from tests.support.services import running_collector
from tests.support.storing import counts, snapshot


def _deliver(client: httpx.Client, deliveries) -> None:
    for path, request in deliveries:
        response = client.post(path, content=request.SerializeToString(), headers=PROTOBUF)
        assert response.status_code == 200, response.content


def _state_after(settings, url: str, deliveries) -> tuple[dict, dict]:
    with running_collector(settings, url) as base, httpx.Client(base_url=base) as client:
        _deliver(client, deliveries)
    with psycopg.connect(url) as conn:
        return counts(conn), snapshot(conn)


def test_the_scenario_derives_the_expected_rows(http: httpx.Client, db: psycopg.Connection) -> None:
    _deliver(http, IN_ORDER)

    assert counts(db) == {
        "spans": 7,
        "log_records": 1,
        "transactions": 2,
        "stage_events": 5,
        "exceptions": 3,
        "exception_events": 1,
        "dead_letters": 1,
        "resources": 1,
    }
    exceptions = db.execute(
        "SELECT correlation_id, kind, status, occurrences, message FROM exceptions ORDER BY 1, 2"
    ).fetchall()
    assert exceptions == [
        ("INV-10", "error", "auto_resolved", 1, "posting 1001 failed: period 11 closed"),
        ("INV-11", "dead_letter", "open", 1, "period 2026-11 is closed"),
        ("INV-11", "error", "open", 2, "posting 2001 failed: period 11 closed"),
    ]
    assert db.execute(
        "SELECT correlation_id, current_stage, status, amount FROM transactions ORDER BY 1"
    ).fetchall() == [
        ("INV-10", "collections_notified", "completed", 500),
        ("INV-11", "invoice_posted", "in_progress", 12500),
    ]


def test_duplicate_batches_change_no_count(settings, new_db_url: Callable[[], str]) -> None:
    once = _state_after(settings, new_db_url(), IN_ORDER)
    twice = _state_after(settings, new_db_url(), IN_ORDER + IN_ORDER)
    interleaved = _state_after(
        settings,
        new_db_url(),
        [IN_ORDER[0], IN_ORDER[0], IN_ORDER[1], IN_ORDER[0], IN_ORDER[2], IN_ORDER[1]],
    )

    assert twice == once
    assert interleaved == once


def test_reverse_order_ends_in_the_same_state(settings, new_db_url: Callable[[], str]) -> None:
    in_order = _state_after(settings, new_db_url(), IN_ORDER)
    reversed_order = _state_after(settings, new_db_url(), list(reversed(IN_ORDER)))

    assert reversed_order == in_order


def test_one_request_with_its_own_duplicates_counts_once(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    first = IN_ORDER[0][1]
    doubled = type(first)()
    doubled.CopyFrom(first)
    doubled.resource_spans.extend(first.resource_spans)

    _deliver(http, [("/v1/traces", doubled)])

    assert counts(db)["spans"] == 3
    assert db.execute("SELECT occurrences FROM exceptions").fetchall() == [(1,)]


def _attempt(at_s: int, seq: int, error: str | None = None) -> tuple[str, object]:
    span = stage_span(
        "INV-30", "invoice_posting", "invoice_recorded", "erp", at_s=at_s, seq=seq, error=error
    )
    return ("/v1/traces", traces_request(span))


# One stage of one transaction: failures, a success, and a failure again (same fingerprint).
_EPISODES = [
    _attempt(10, 3000, "posting 1 failed: period closed"),
    _attempt(11, 3010, "posting 2 failed: period closed"),
    _attempt(20, 3020),
    _attempt(30, 3030, "posting 3 failed: period closed"),
]


def test_failures_before_and_after_a_success_end_alike_in_reverse_order(
    settings, new_db_url: Callable[[], str]
) -> None:
    in_order = _state_after(settings, new_db_url(), _EPISODES)
    reversed_order = _state_after(settings, new_db_url(), list(reversed(_EPISODES)))

    assert reversed_order == in_order
    statuses = sorted((row[7], row[10]) for row in in_order[1]["exceptions"])  # and occurrences
    assert statuses == [("auto_resolved", 2), ("open", 1)]


def _shifted(span, seconds: int):
    """The same span (same IDs) reported with other times."""
    moved = type(span)()
    moved.CopyFrom(span)
    moved.start_time_unix_nano += seconds * 1_000_000_000
    moved.end_time_unix_nano += seconds * 1_000_000_000
    return moved


def test_a_span_sent_again_with_other_times_is_one_failure(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    span = stage_span(
        "INV-50",
        "invoice_posting",
        "invoice_recorded",
        "erp",
        at_s=10,
        seq=5000,
        error="posting 1 failed: period closed",
    )

    _deliver(http, [("/v1/traces", traces_request(span))])
    _deliver(http, [("/v1/traces", traces_request(_shifted(span, 1), _shifted(span, 2)))])

    assert counts(db)["spans"] == 3  # three start times: three stored spans
    assert db.execute("SELECT occurrences FROM exceptions").fetchall() == [(1,)]
    assert db.execute("SELECT count(*) FROM exception_occurrences").fetchone() == (1,)


_CONTEXT_MISMATCHES = """
SELECT e.correlation_id, e.id FROM exceptions e JOIN transactions t USING (correlation_id)
WHERE (e.process, e.customer_id, e.order_id, e.invoice_id, e.amount, e.currency,
       e.legal_entity)
      IS DISTINCT FROM (t.process, t.customer_id, t.order_id, t.invoice_id, t.amount,
                        t.currency, t.legal_entity)
"""


def test_exceptions_carry_their_transactions_business_context(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    # New exceptions take it when they are created (a failure reports no business keys).
    _deliver(http, IN_ORDER)
    assert db.execute(_CONTEXT_MISMATCHES).fetchall() == []
    assert db.execute(
        "SELECT correlation_id, invoice_id, amount, currency FROM exceptions ORDER BY 1, kind"
    ).fetchall() == [
        ("INV-10", "INV-10", 500, "EUR"),
        ("INV-11", "INV-11", 12500, "USD"),
        ("INV-11", "INV-11", 12500, "USD"),
    ]
    # Existing ones follow when a later stage reports more of the transaction.
    later = traces_request(
        stage_span(
            "INV-11",
            "invoice_posting",
            "invoice_posted",
            "crm",
            at_s=1,
            seq=3000,
            customer_id="CUST-7",
            order_id="SO-7",
            legal_entity="DE01",
        ),
    )
    _deliver(http, [("/v1/traces", later)])
    assert db.execute(_CONTEXT_MISMATCHES).fetchall() == []
    assert db.execute(
        "SELECT DISTINCT customer_id, order_id, legal_entity FROM exceptions"
        " WHERE correlation_id = 'INV-11'"
    ).fetchall() == [("CUST-7", "SO-7", "DE01")]

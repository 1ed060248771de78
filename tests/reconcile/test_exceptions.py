"""A break is an exception like any other: the SLA evaluation gives it its impact (the
amount thresholds apply) and due time, alerting is told of it, and when telemetry knows
the key it sits beside the transaction's own exceptions, under its correlation ID."""

from __future__ import annotations

import psycopg

from alerts.outbox import unpack
from tests.support.otlp import stage_span, traces_request
from tests.support.reconciling import BILLING_FIELDS, COMPARE, ERP_FIELDS, billing, erp


def test_a_break_is_classified_by_the_impact_rules_and_announced(
    db: psycopg.Connection, exports, reconcile, run_evaluation
) -> None:
    exports([billing("INV-BIG", total="25000.00"), billing("INV-SMALL", total="10.00")], [])
    reconcile()

    run_evaluation()

    rows = db.execute(
        "SELECT invoice_id, impact, due_at - first_seen FROM exceptions ORDER BY invoice_id"
    ).fetchall()
    assert [(key, impact) for key, impact, _ in rows] == [
        ("INV-BIG", "critical"),
        ("INV-SMALL", "medium"),
    ]
    assert all(due is not None for *_, due in rows)
    unpack(db)
    announced = db.execute(
        "SELECT q2c_event_facts(a)->>'kind', q2c_event_facts(a)->>'fingerprint' "
        "FROM alert_events a WHERE type = 'exception.opened'"
    ).fetchall()
    assert len(announced) == 2 and {kind for kind, _ in announced} == {"reconciliation"}
    assert len({fingerprint for _, fingerprint in announced}) == 1  # grouped as one


def test_a_key_telemetry_knows_links_the_break_to_its_transaction(
    db: psycopg.Connection, exports, reconcile, send
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
                customer_id="C-7",
                legal_entity="ACME-DE",
            ),
            stage_span(
                "corr-inv-7",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=2,
                seq=110,
                error="ERP posting rejected: period closed",
            ),
        )
    )
    exports([billing("INV-7", account="C-7"), billing("INV-8")], [erp("INV-8")])

    reconcile()

    rows = db.execute(
        "SELECT correlation_id, kind, process, legal_entity, error_type FROM exceptions "
        "ORDER BY kind, id"
    ).fetchall()
    # The ERP's rejection, and beside it the invoice it never recorded (the root cause).
    assert rows[0][:3] == ("corr-inv-7", "error", "invoice_posting")
    assert rows[1:] == [
        ("corr-inv-7", "reconciliation", "invoice_posting", "ACME-DE", "missing_in:erp")
    ]
    assert db.execute(
        "SELECT correlation_id FROM reconciliation_breaks WHERE key = 'INV-7'"
    ).fetchone() == ("corr-inv-7",)


def test_a_break_that_goes_on_keeps_its_exception_when_a_newer_transaction_has_the_key(
    db: psycopg.Connection, exports, reconcile, send
) -> None:
    def posted(correlation_id: str, at_s: int) -> None:
        span = stage_span(
            correlation_id,
            "invoice_posting",
            "invoice_posted",
            "billing",
            at_s=at_s,
            seq=at_s,
            invoice_id="INV-7",
        )
        send(traces_request(span))

    posted("corr-inv-7", 1)
    exports([billing("INV-7")], [])
    reconcile()
    (first,) = db.execute("SELECT id FROM exceptions WHERE kind = 'reconciliation'").fetchone()
    posted("corr-pay-7", 5)  # the payment of the same invoice, seen later

    reconcile()

    rows = db.execute(
        "SELECT id, correlation_id, status FROM exceptions WHERE kind = 'reconciliation'"
    ).fetchall()
    assert rows == [(first, "corr-inv-7", "open")]  # not resolved and opened again


def test_a_reconciliation_keyed_by_customer_takes_the_key_as_the_customer(
    db, exports, reconcile
) -> None:
    exports(
        [billing("INV-1", account="C-7", currency="EUR")],
        [erp("INV-1", customerRef="C-7", currencyCode="USD")],
    )

    def without_invoice(fields: dict[str, str]) -> dict[str, str]:
        return {f: column for f, column in fields.items() if f != "invoice_id"}

    report = reconcile(
        object="customer",
        key="customer_id",
        sources={
            "billing": {
                "type": "file",
                "path": "billing*.csv",
                "fields": without_invoice(BILLING_FIELDS),
            },
            "erp": {"type": "file", "path": "erp.jsonl", "fields": without_invoice(ERP_FIELDS)},
        },
        compare={f: rule for f, rule in COMPARE.items() if f != "customer_id"},
    )

    assert (report.status, report.breaks) == ("succeeded", {"mismatch:currency": 1})
    assert db.execute(
        "SELECT customer_id, currency FROM exceptions WHERE kind = 'reconciliation'"
    ).fetchall() == [("C-7", "EUR")]


def test_an_object_keyed_by_a_field_telemetry_keeps_links_by_that_field(
    db: psycopg.Connection, exports, reconcile, send
) -> None:
    # A subscription keyed by its order's ID: telemetry saw the order.
    send(
        traces_request(
            stage_span(
                "corr-so-7",
                "order_to_activation",
                "order_booked",
                "crm",
                at_s=1,
                seq=300,
                order_id="SO-7",
            )
        )
    )
    exports([billing("SO-7"), billing("SO-8")], [])

    def by_order(fields: dict[str, str]) -> dict[str, str]:
        return {("order_id" if f == "invoice_id" else f): c for f, c in fields.items()}

    reconcile(
        object="subscription",
        key="order_id",
        sources={
            "billing": {"type": "file", "path": "billing*.csv", "fields": by_order(BILLING_FIELDS)},
            "erp": {"type": "file", "path": "erp.jsonl", "fields": by_order(ERP_FIELDS)},
        },
    )

    assert db.execute(
        "SELECT correlation_id, process, order_id FROM exceptions WHERE kind = 'reconciliation'"
        " ORDER BY order_id"
    ).fetchall() == [
        ("corr-so-7", "order_to_activation", "SO-7"),
        ("reconcile:invoices:SO-8", None, "SO-8"),  # no transaction: its key all the same
    ]


def test_telemetry_that_agrees_does_not_resolve_a_break_of_the_records(
    db: psycopg.Connection, exports, reconcile, send, run_evaluation
) -> None:
    # What the systems reported agrees, the records do not: the evaluation's telemetry
    # reconciliation resolves its own exceptions, never a break of the records.
    send(
        traces_request(
            *(
                stage_span(
                    "corr-inv-9",
                    "invoice_posting",
                    stage,
                    system,
                    at_s=at_s,
                    seq=seq,
                    invoice_id="INV-9",
                    amount=120.0,
                    currency="EUR",
                )
                for stage, system, at_s, seq in (
                    ("invoice_posted", "billing", 1, 200),
                    ("invoice_recorded", "erp", 2, 210),
                )
            )
        )
    )
    exports([billing("INV-9")], [])
    reconcile()

    run_evaluation()

    assert db.execute(
        "SELECT correlation_id, error_type, status FROM exceptions WHERE kind = 'reconciliation'"
    ).fetchall() == [("corr-inv-9", "missing_in:erp", "open")]
    reconciled = db.execute("SELECT matched FROM reconciliations").fetchall()
    assert reconciled == [(True,)]  # the telemetry's own check ran, and agreed

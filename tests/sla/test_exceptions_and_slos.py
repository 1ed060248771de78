"""Stalled transactions, reconciliation, impact and aging, SLO burn rates, money at risk,
and `q2c kpis` — each checked against numbers worked out here, not by the code under test."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from click.testing import CliRunner

from q2c.cli import main
from tests.support.otlp import BASE_NS, NS, stage_span, traces_request

NOW_S = BASE_NS / NS + 3600  # tests.support.otlp.BASE_NS is an hour ago


def _at(seconds_ago: float) -> float:
    """`at_s` for stage_span: seconds relative to BASE_NS for a moment `seconds_ago`."""
    return NOW_S - seconds_ago - BASE_NS / NS


def test_a_waiting_transaction_stalls_and_recovers_when_its_stage_arrives(
    send, run_evaluation, db: psycopg.Connection
) -> None:
    send(traces_request(stage_span("INV-S", "invoice_posting", "invoice_posted", "billing",
                                   at_s=_at(2 * 3600), seq=50_000, invoice_id="INV-S",
                                   amount=700.0)))  # fmt: skip

    first = run_evaluation()
    again = run_evaluation()
    stalled = db.execute(
        "SELECT stage, status, impact, invoice_id, message FROM exceptions WHERE kind = 'stalled'"
    ).fetchall()
    status = db.execute("SELECT status FROM transactions").fetchone()[0]

    send(traces_request(stage_span("INV-S", "invoice_posting", "invoice_recorded", "erp",
                                   at_s=_at(60), seq=50_010)))  # fmt: skip
    after = db.execute("SELECT status, resolution FROM exceptions WHERE kind = 'stalled'")

    assert (first.stalled, again.stalled) == (1, 0)
    assert stalled[0][:4] == ("invoice_recorded", "open", "medium", "INV-S")
    assert stalled[0][4].startswith("no invoice_recorded within 30m after invoice_posted at ")
    assert status == "stalled"
    assert after.fetchone()[0] == "auto_resolved"
    assert db.execute("SELECT status, current_stage FROM transactions").fetchone() == (
        "in_progress", "invoice_recorded")  # fmt: skip
    assert db.execute("SELECT action, before, after FROM exception_events").fetchall() == [
        ("auto_resolved", {"status": "open"}, {"status": "auto_resolved"})
    ]


def test_reconciliation_flags_amounts_that_disagree(
    send, run_evaluation, kpis, db: psycopg.Connection
) -> None:
    send(traces_request(
        stage_span("INV-A", "invoice_posting", "invoice_posted", "billing", at_s=_at(900),
                   seq=60_000, amount=100.0, currency="EUR"),
        stage_span("INV-A", "invoice_posting", "invoice_recorded", "erp", at_s=_at(800),
                   seq=60_010, amount=90.0, currency="EUR"),
        stage_span("INV-B", "invoice_posting", "invoice_posted", "billing", at_s=_at(900),
                   seq=60_020, amount=50.0, currency="EUR"),
        stage_span("INV-B", "invoice_posting", "invoice_recorded", "erp", at_s=_at(800),
                   seq=60_030, amount=50.001, currency="EUR"),
    ))  # fmt: skip

    report = run_evaluation()
    run_evaluation()

    assert (report.reconciled, report.mismatched, report.reconciliation_exceptions) == (2, 1, 1)
    assert db.execute(
        "SELECT correlation_id, kind, stage, status, message FROM exceptions"
    ).fetchall() == [("INV-A", "reconciliation", "invoice_recorded", "open",
                      "amount: billing=100.0, erp=90.0")]  # fmt: skip
    rec = kpis()["processes"]["invoice_posting"]["reconciliation"]
    assert rec == {"checked": 2, "matched": 1, "accuracy": 0.5}

    # A third system reporting later re-checks INV-A: still one transaction checked.
    later = stage_span("INV-A", "invoice_posting", "collections_notified", "collections",
                       at_s=_at(700), seq=60_040, amount=100.0)  # fmt: skip
    send(traces_request(later))
    run_evaluation()
    assert kpis()["processes"]["invoice_posting"]["reconciliation"] == rec


def test_impact_due_time_aging_and_money_at_risk(
    send, run_evaluation, kpis, db: psycopg.Connection
) -> None:
    send(traces_request(
        stage_span("INV-BIG", "invoice_posting", "invoice_posted", "billing",
                   at_s=_at(2 * 86400 + 60), seq=70_000, amount=15_000.0, currency="EUR"),
        stage_span("INV-BIG", "invoice_posting", "invoice_recorded", "erp",
                   at_s=_at(2 * 86400), seq=70_010, error="period closed"),
        stage_span("INV-SMALL", "invoice_posting", "invoice_posted", "billing", at_s=_at(600),
                   seq=70_020, amount=40.0, currency="EUR"),
        stage_span("INV-SMALL", "invoice_posting", "invoice_recorded", "erp", at_s=_at(300),
                   seq=70_030, error="period closed"),
    ))  # fmt: skip

    run_evaluation()
    document = kpis(timedelta(days=3))

    rows = db.execute(
        "SELECT correlation_id, kind, impact, due_at - first_seen FROM exceptions "
        "ORDER BY correlation_id, kind"
    ).fetchall()
    assert rows == [
        ("INV-BIG", "error", "high", timedelta(hours=24)),
        ("INV-BIG", "stalled", "high", timedelta(hours=24)),
        ("INV-SMALL", "error", "medium", timedelta(days=3)),
    ]
    exceptions = document["exceptions"]
    assert exceptions["open"] == 3
    assert exceptions["open_by_impact"] == {"critical": 0, "high": 2, "medium": 1, "low": 0}
    assert exceptions["open_by_aging"] == {"< 1h": 2, "1-4h": 0, "4-24h": 0, "1-3d": 1, "> 3d": 0}
    assert exceptions["overdue"] == 1
    # INV-BIG has two open exceptions but its 15,000 EUR is at risk once.
    assert document["money_at_risk"]["by_process_impact"] == [
        {"process": "invoice_posting", "impact": "high", "currency": "EUR", "amount": 15_000.0},
        {"process": "invoice_posting", "impact": "medium", "currency": "EUR", "amount": 40.0},
    ]


def test_burn_rates_and_error_budget_follow_the_bad_ratio(send, run_evaluation, kpis) -> None:
    bucket = int(time.time()) // 300 * 300 - 300  # the last whole 5-minute bucket
    completed_at = bucket + 100
    spans = []
    for i in range(20):
        latency = 60 if i % 2 else 1200  # half within the 10-minute objective, half not
        posted_at, recorded_at = completed_at - latency - BASE_NS / NS, completed_at - BASE_NS / NS
        spans.append(stage_span(f"SLO-{i}", "invoice_posting", "invoice_posted", "billing",
                                at_s=posted_at, seq=80_000 + 10 * i))  # fmt: skip
        spans.append(stage_span(f"SLO-{i}", "invoice_posting", "invoice_recorded", "erp",
                                at_s=recorded_at, seq=90_000 + 10 * i))  # fmt: skip
    send(traces_request(*spans))
    run_evaluation()

    # Every window (5 min … 28 days) ending at the bucket's end holds all 20 transactions.
    sla = kpis(now=datetime.fromtimestamp(bucket + 300, UTC))["processes"]["invoice_posting"]["sla"]

    bad_ratio, budget = 10 / 20, 1 - 0.99
    assert (sla["good"], sla["total"]) == (10, 20)
    assert sla["compliance"] == 0.5
    assert sla["error_budget_remaining"] == pytest.approx(1 - bad_ratio / budget)
    assert sla["burn_rates"] == pytest.approx(
        {"1h": bad_ratio / budget, "5m": bad_ratio / budget, "6h": bad_ratio / budget,
         "30m": bad_ratio / budget})  # fmt: skip
    assert [a["firing"] for a in sla["alerts"]] == [True, True]
    assert sla["alert_state"] == "page"


def test_kpis_command_prints_json_and_a_table(
    send, run_evaluation, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    send(traces_request(
        stage_span("O-1", "order_to_activation", "opportunity_closed_won", "crm", at_s=_at(3000),
                   seq=95_000),
        stage_span("O-1", "order_to_activation", "customer_created", "billing", at_s=_at(2900),
                   seq=95_010),
        stage_span("O-1", "order_to_activation", "subscription_activated", "billing",
                   at_s=_at(2400), seq=95_020),
    ))  # fmt: skip
    run_evaluation()
    monkeypatch.setenv("DATABASE_URL", db_url)

    as_json = CliRunner().invoke(main, ["kpis", "--json", "--window", "24h"])
    as_table = CliRunner().invoke(main, ["kpis"])

    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.output)
    assert set(document) == {"window", "latency", "processes", "exceptions", "replays",
                             "money_at_risk"}  # fmt: skip
    o2a = document["latency"]["order_to_activation"]
    assert o2a["count"] == 1 and o2a["p50_ms"] == pytest.approx(600_000, rel=0.01)
    assert as_table.exit_code == 0
    assert re.search(r"order_to_activation\s+1\s+(9\.9|10\.0)m", as_table.output)

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

from alerts.outbox import unpack
from cli.main import main
from queries.exceptions import ExceptionFilter, list_exceptions
from queries.kpis import comparison_kpis
from tests.support.otlp import BASE_NS, NS, stage_span, traces_request

NOW_S = BASE_NS / NS + 3600  # tests.support.otlp.BASE_NS is an hour ago


def _at(seconds_ago: float) -> float:
    """`at_s` for stage_span: seconds relative to BASE_NS for a moment `seconds_ago`."""
    return NOW_S - seconds_ago - BASE_NS / NS


def test_a_waiting_transaction_stalls_and_recovers_when_its_stage_arrives(
    send, run_evaluation, db: psycopg.Connection
) -> None:
    send(
        traces_request(
            stage_span(
                "INV-S",
                "invoice_posting",
                "invoice_posted",
                "billing",
                at_s=_at(2 * 3600),
                seq=50_000,
                invoice_id="INV-S",
                amount=700.0,
            )
        )
    )

    first = run_evaluation()
    again = run_evaluation()
    stalled = db.execute(
        "SELECT stage, status, impact, invoice_id, message, first_seen, last_seen "
        "FROM exceptions WHERE kind = 'stalled'"
    ).fetchall()
    status = db.execute("SELECT status FROM transactions").fetchone()[0]
    (posted_at,) = db.execute("SELECT reached_at FROM stage_events").fetchone()

    send(
        traces_request(
            stage_span(
                "INV-S", "invoice_posting", "invoice_recorded", "erp", at_s=_at(60), seq=50_010
            )
        )
    )
    after = db.execute("SELECT status, resolution FROM exceptions WHERE kind = 'stalled'")

    assert (first.stalled, again.stalled) == (1, 0)
    assert stalled[0][:4] == ("invoice_recorded", "open", "medium", "INV-S")
    # Seen from when it became due: invoice_posted reached, plus invoice_recorded's 30m.
    assert stalled[0][5] == stalled[0][6] == posted_at + timedelta(minutes=30)
    assert stalled[0][4].startswith("no invoice_recorded within 30m after invoice_posted at ")
    assert status == "stalled"
    assert after.fetchone()[0] == "auto_resolved"
    assert db.execute("SELECT status, current_stage FROM transactions").fetchone() == (
        "in_progress",
        "invoice_recorded",
    )
    assert db.execute("SELECT action, before, after FROM exception_events").fetchall() == [
        ("auto_resolved", {"status": "open"}, {"status": "auto_resolved"})
    ]


def test_open_stalls_of_earlier_versions_are_dated_from_when_they_became_due_once(
    send, run_evaluation, db: psycopg.Connection, owner_db: psycopg.Connection
) -> None:
    send(
        traces_request(
            stage_span(
                "INV-OLD",
                "invoice_posting",
                "invoice_posted",
                "billing",
                at_s=_at(5 * 3600),
                seq=51_000,
                invoice_id="INV-OLD",
            )
        )
    )
    run_evaluation()
    # As an earlier version left it: seen when the evaluation noticed it, due from then.
    db.execute(
        "UPDATE exceptions SET first_seen = now(), last_seen = now(), "
        "due_at = now() + interval '3 days' WHERE kind = 'stalled'"
    )
    owner_db.execute("DELETE FROM watermarks WHERE name <> 'evaluate'")

    run_evaluation()
    dated = db.execute(
        "SELECT first_seen, due_at - first_seen FROM exceptions WHERE kind = 'stalled'"
    ).fetchone()
    db.execute("UPDATE exceptions SET first_seen = now(), last_seen = now() WHERE kind = 'stalled'")
    run_evaluation()  # once: a later change is left alone
    later = db.execute("SELECT first_seen FROM exceptions WHERE kind = 'stalled'").fetchone()

    (posted_at,) = db.execute("SELECT reached_at FROM stage_events").fetchone()
    assert dated == (posted_at + timedelta(minutes=30), timedelta(days=3))
    assert later[0] > posted_at + timedelta(hours=4)
    # Classified again in place, not announced again: one exception.opened, when it was new.
    unpack(db)
    opened = db.execute(
        "SELECT count(*) FROM alert_events WHERE type = 'exception.opened'"
    ).fetchone()
    assert opened == (1,)


def test_an_exception_first_seen_ahead_of_the_database_clock_is_never_of_negative_age(
    send, engine, db: psycopg.Connection
) -> None:
    send(
        traces_request(
            stage_span(
                "INV-SOON",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=time.time() + 120 - BASE_NS / NS,  # two minutes ahead of now
                seq=52_000,
                error="period closed",
            )
        )
    )

    [row] = list_exceptions(engine, ExceptionFilter())

    assert row["first_seen"] > db.execute("SELECT now()").fetchone()[0]
    assert row["age"] == timedelta(0)


def test_reconciliation_flags_amounts_that_disagree(
    send, run_evaluation, kpis, db: psycopg.Connection
) -> None:
    send(
        traces_request(
            stage_span(
                "INV-A",
                "invoice_posting",
                "invoice_posted",
                "billing",
                at_s=_at(900),
                seq=60_000,
                amount=100.0,
                currency="EUR",
            ),
            stage_span(
                "INV-A",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=_at(800),
                seq=60_010,
                amount=90.0,
                currency="EUR",
            ),
            stage_span(
                "INV-B",
                "invoice_posting",
                "invoice_posted",
                "billing",
                at_s=_at(900),
                seq=60_020,
                amount=50.0,
                currency="EUR",
            ),
            stage_span(
                "INV-B",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=_at(800),
                seq=60_030,
                amount=50.001,
                currency="EUR",
            ),
        )
    )

    report = run_evaluation()
    run_evaluation()

    assert (report.reconciled, report.mismatched, report.reconciliation_exceptions) == (2, 1, 1)
    assert db.execute(
        "SELECT correlation_id, kind, stage, status, message FROM exceptions"
    ).fetchall() == [
        ("INV-A", "reconciliation", "invoice_recorded", "open", "amount: billing=100.0, erp=90.0")
    ]
    rec = kpis()["processes"]["invoice_posting"]["reconciliation"]
    assert rec == {"checked": 2, "matched": 1, "accuracy": 0.5}

    # A third system reporting later re-checks INV-A: still one transaction checked.
    later = stage_span(
        "INV-A",
        "invoice_posting",
        "collections_notified",
        "collections",
        at_s=_at(700),
        seq=60_040,
        amount=100.0,
    )
    send(traces_request(later))
    run_evaluation()
    assert kpis()["processes"]["invoice_posting"]["reconciliation"] == rec


def test_impact_due_time_aging_and_money_at_risk(
    send, run_evaluation, kpis, db: psycopg.Connection
) -> None:
    send(
        traces_request(
            stage_span(
                "INV-BIG",
                "invoice_posting",
                "invoice_posted",
                "billing",
                at_s=_at(2 * 86400 + 60),
                seq=70_000,
                amount=15_000.0,
                currency="EUR",
            ),
            stage_span(
                "INV-BIG",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=_at(2 * 86400),
                seq=70_010,
                error="period closed",
            ),
            stage_span(
                "INV-SMALL",
                "invoice_posting",
                "invoice_posted",
                "billing",
                at_s=_at(600),
                seq=70_020,
                amount=40.0,
                currency="EUR",
            ),
            stage_span(
                "INV-SMALL",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=_at(300),
                seq=70_030,
                error="period closed",
            ),
        )
    )

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
    # INV-BIG's stall became due 30 minutes after its posting two days ago: it is as old,
    # and overdue, like its failure.
    assert exceptions["open_by_aging"] == {"< 1h": 1, "1-4h": 0, "4-24h": 0, "1-3d": 2, "> 3d": 0}
    assert exceptions["overdue"] == 2
    # INV-BIG has two open exceptions but its 15,000 EUR is at risk once.
    assert document["money_at_risk"]["by_process_impact"] == [
        {"process": "invoice_posting", "impact": "high", "currency": "EUR", "amount": 15_000.0},
        {"process": "invoice_posting", "impact": "medium", "currency": "EUR", "amount": 40.0},
    ]


@pytest.mark.parametrize(
    ("slow", "firing", "state"),
    [
        # 10 of 20 slow: burning at 50 x the budget, every rule fires.
        (10, [True, True, True, True], "page"),
        # 1 of 20: at 5 x, over the ticket rules (3 x a day, 1 x three days), under the pages.
        (1, [False, False, True, True], "ticket"),
    ],
)
def test_burn_rates_and_error_budget_follow_the_bad_ratio(
    send, run_evaluation, kpis, engine, policy, slow: int, firing: list[bool], state: str
) -> None:
    bucket = int(time.time()) // 300 * 300 - 300  # the last whole 5-minute bucket
    completed_at = bucket + 100
    spans = []
    for i in range(20):
        latency = 1200 if i < slow else 60  # the slow ones over the 10-minute objective
        posted_at, recorded_at = completed_at - latency - BASE_NS / NS, completed_at - BASE_NS / NS
        spans.append(
            stage_span(
                f"SLO-{i}",
                "invoice_posting",
                "invoice_posted",
                "billing",
                at_s=posted_at,
                seq=80_000 + 10 * i,
            )
        )
        spans.append(
            stage_span(
                f"SLO-{i}",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=recorded_at,
                seq=90_000 + 10 * i,
            )
        )
    send(traces_request(*spans))
    run_evaluation()

    # Every window (5 min … 28 days) ending at the bucket's end holds all 20 transactions.
    now = datetime.fromtimestamp(bucket + 300, UTC)
    document = kpis(now=now)
    sla = document["processes"]["invoice_posting"]["sla"]

    bad_ratio, budget = slow / 20, 1 - 0.99
    assert (sla["good"], sla["total"]) == (20 - slow, 20)
    assert sla["compliance"] == pytest.approx(1 - bad_ratio)
    assert sla["error_budget_remaining"] == pytest.approx(1 - bad_ratio / budget)
    windows = ("1h", "5m", "6h", "30m", "1d", "2h", "3d")
    assert sla["burn_rates"] == pytest.approx(dict.fromkeys(windows, bad_ratio / budget))
    assert [(a["severity"], a["firing"]) for a in sla["alerts"]] == list(
        zip(["page", "page", "ticket", "ticket"], firing, strict=True)
    )
    assert sla["alert_state"] == state
    # What a later window is compared with: the same figures of this window, nothing more.
    assert comparison_kpis(engine, policy, timedelta(hours=24), now) == {
        "latency": document["latency"],
        "auto_resolved_pct": document["exceptions"]["auto_resolved_pct"],
        "replays": document["replays"],
    }


def test_slo_compliance_is_given_for_the_window_and_the_period_with_bad_events_by_cause(
    send, run_evaluation, kpis
) -> None:
    now = int(time.time()) // 300 * 300  # a bucket boundary
    spans = []

    def completed(n: int, ends_ago: int, latency: int) -> None:
        done = now - ends_ago - BASE_NS / NS
        for stage, system, at, seq in (
            ("invoice_posted", "billing", done - latency, 120_000 + 20 * n),
            ("invoice_recorded", "erp", done, 120_010 + 20 * n),
        ):
            spans.append(stage_span(f"W-{n}", "invoice_posting", stage, system, at_s=at, seq=seq))

    for n in range(4):  # two days ago: within the 28-day period, outside the last 24 h
        completed(n, 2 * 86400, 60)
    for n in range(4, 6):  # the last hour, over the 10-minute objective
        completed(n, 1800, 1200)
    spans.append(  # posted two hours ago, never recorded: stalled 30 minutes later
        stage_span(
            "W-STALL",
            "invoice_posting",
            "invoice_posted",
            "billing",
            at_s=now - 7200 - BASE_NS / NS,
            seq=121_000,
        )
    )
    send(traces_request(*spans))
    run_evaluation()

    sla = kpis(timedelta(days=1), now=datetime.fromtimestamp(now, UTC))["processes"][
        "invoice_posting"
    ]["sla"]

    assert (sla["good"], sla["total"], sla["bad"]) == (4, 7, {"slow": 2, "stalled": 1})
    assert sla["compliance"] == round(4 / 7, 5)
    assert sla["window"] == {
        "seconds": 86400,
        "good": 0,
        "total": 3,
        "compliance": 0.0,
        "bad": {"slow": 2, "stalled": 1},
    }


def test_kpis_command_prints_json_and_a_table(
    send, run_evaluation, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    send(
        traces_request(
            stage_span(
                "O-1",
                "order_to_activation",
                "opportunity_closed_won",
                "crm",
                at_s=_at(3000),
                seq=95_000,
            ),
            stage_span(
                "O-1",
                "order_to_activation",
                "customer_created",
                "billing",
                at_s=_at(2900),
                seq=95_010,
            ),
            stage_span(
                "O-1",
                "order_to_activation",
                "subscription_activated",
                "billing",
                at_s=_at(2400),
                seq=95_020,
            ),
        )
    )
    run_evaluation()
    monkeypatch.setenv("DATABASE_URL", db_url)

    as_json = CliRunner().invoke(main, ["kpis", "--json", "--window", "24h"])
    as_table = CliRunner().invoke(main, ["kpis"])

    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.output)
    assert set(document) == {
        "window",
        "latency",
        "processes",
        "exceptions",
        "replays",
        "money_at_risk",
        "records_reconciliation",
    }
    o2a = document["latency"]["order_to_activation"]
    assert o2a["count"] == 1 and o2a["p50_ms"] == pytest.approx(600_000, rel=0.01)
    assert as_table.exit_code == 0
    assert re.search(r"order_to_activation\s+1\s+(9\.9|10\.0)m", as_table.output)

"""The alerting watch records the events of time passing: an open exception falling due,
once, and a process's SLO alert state changing, once per change."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import Engine

from alerts.outbox import unpack
from alerts.watch import LOCK_KEY, WatchReport, watch
from queries.exceptions import close_exceptions
from sla.policy import Policy
from tests.support.otlp import BASE_NS, NS, stage_span, traces_request


@pytest.fixture
def watch_at(db_url: str, engine: Engine, policy: Policy) -> Callable[[datetime], WatchReport]:
    def run(now: datetime) -> WatchReport:
        with psycopg.connect(db_url, autocommit=True) as conn:
            return watch(conn, engine, policy, now)

    return run


def _events(db: psycopg.Connection, kind: str) -> list[tuple]:
    unpack(db)  # as the alerting pass does before it reads them
    return db.execute(
        "SELECT correlation_id, exception_id, q2c_event_facts(a) FROM alert_events a "
        "WHERE type = %s ORDER BY id",
        (kind,),
    ).fetchall()


def _failure(invoice: str, seq: int):
    at_s = (time.time_ns() - BASE_NS) / NS
    return traces_request(
        stage_span(
            invoice, "invoice_posting", "invoice_recorded", "erp", at_s=at_s, seq=seq, error="down"
        )
    )


def test_an_open_exception_falling_due_is_announced_once(
    send, run_evaluation, db: psycopg.Connection, engine: Engine, users, watch_at
) -> None:
    send(_failure("INV-W1", 10), _failure("INV-W2", 20))
    run_evaluation()  # classified: each has its due time
    due = dict(
        db.execute(
            "SELECT correlation_id, due_at FROM exceptions WHERE correlation_id LIKE 'INV-W%'"
        ).fetchall()
    )
    [(closed_id,)] = db.execute(
        "SELECT id FROM exceptions WHERE correlation_id = 'INV-W2'"
    ).fetchall()
    close_exceptions(engine, "fin", [closed_id], "resolved", "reposted")  # closed: not overdue

    before = watch_at(due["INV-W1"] - timedelta(seconds=1))
    at_due = watch_at(due["INV-W1"])
    later = watch_at(due["INV-W1"] + timedelta(hours=1))

    assert (before.overdue, at_due.overdue, later.overdue) == (0, 1, 0)
    [(correlation_id, exception_id, facts)] = _events(db, "exception.overdue")
    assert correlation_id == "INV-W1" and facts["status"] == "open"
    assert datetime.fromisoformat(facts["due_at"]) == due["INV-W1"]
    assert exception_id != closed_id


def _slo_traffic(slow: int) -> tuple[object, datetime]:
    """20 invoice postings completed in the last whole 5-minute bucket, `slow` of them over
    the 10-minute objective; and the end of that bucket."""
    bucket = int(time.time()) // 300 * 300 - 300
    spans = []
    for i in range(20):
        latency = 1200 if i < slow else 60
        recorded_at = bucket + 100 - BASE_NS / NS
        for stage, system, at_s, seq in (
            ("invoice_posted", "billing", recorded_at - latency, 70_000 + 10 * i),
            ("invoice_recorded", "erp", recorded_at, 75_000 + 10 * i),
        ):
            spans.append(
                stage_span(f"SLO-W{slow}-{i}", "invoice_posting", stage, system, at_s=at_s, seq=seq)
            )
    return traces_request(*spans), datetime.fromtimestamp(bucket + 300, UTC)


def test_an_slo_state_change_is_announced_once_with_its_burn_rates(
    send, run_evaluation, db: psycopg.Connection, watch_at
) -> None:
    request, now = _slo_traffic(slow=10)  # burning at 50 x the budget: page
    quiet = watch_at(now - timedelta(days=40))  # nothing in any window yet: ok, not news
    send(request)
    run_evaluation()

    paged = watch_at(now)
    still = watch_at(now + timedelta(seconds=30))
    recovered = watch_at(now + timedelta(days=40))  # every window empty again: ok

    assert (quiet.slo_changes, still.slo_changes) == ([], [])
    assert paged.slo_changes == ["invoice_posting: ok → page"]
    assert recovered.slo_changes == ["invoice_posting: page → ok"]
    [(_, _, page), (_, _, ok)] = _events(db, "slo.alert")
    assert (page["process"], page["state"], page["previous"]) == ("invoice_posting", "page", "ok")
    assert page["burn_rates"]["5m"] == pytest.approx(50)
    assert (ok["state"], ok["previous"]) == ("ok", "page")
    assert db.execute("SELECT process, state FROM slo_alert_states").fetchall() == [
        ("invoice_posting", "ok")
    ]


def test_a_second_watch_at_the_same_time_skips(
    db_url: str, engine: Engine, policy: Policy, watch_at
) -> None:
    with psycopg.connect(db_url, autocommit=True) as holder, holder.transaction():
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        skipped = watch_at(datetime.now(UTC))

    assert skipped.skipped
    assert not watch_at(datetime.now(UTC)).skipped

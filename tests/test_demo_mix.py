"""The demo's fault mixes land where docs/demo.md says: by default most SLOs within their
objective, one burning its error budget, one breached, and a handful of exceptions of each
kind; with --chaos every SLO breached and exceptions by the hundred.

Each test sends what `make demo` sends through a real collector into a fresh database —
its seeded history, then a few minutes of traffic at the demo's rate — evaluates once and
reads the KPIs. The mix and the seed are the demo's, so the figures are the demo's too;
the "live" minutes are backdated (no HTTP), which decides outcomes by the same mix.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg

from demo.__main__ import HISTORY_DAYS
from demo.sandbox import HISTORY_PER_DAY, backfill, deadlines, stage_systems, telemetry
from demo.traffic import CHAOS, NS, REALISTIC, TrafficGenerator, TrafficMix
from q2c.database import create_db_engine
from q2c.settings import Settings
from q2c.vocabulary import EXCEPTION_KINDS
from queries.kpis import collect_kpis
from sla.evaluate import evaluate
from sla.policy import Policy
from tests.support.services import running_collector

LIVE_MINUTES = 5  # of traffic at the demo's default rate, after the history
STARTED_AGO = timedelta(minutes=12)  # the demo's start: its last flows have ended by now


def _state(slo: dict) -> str:
    """What docs/demo.md calls an SLO: breached below its target, burning with less than
    half its error budget left, else within its objective."""
    budget = slo["error_budget_remaining"]
    if budget < 0:
        return "breached"
    return "burning" if budget < 0.5 else "within"


def _run_demo(db_url: str, policy: Policy, mix: TrafficMix) -> tuple[dict, Counter[str]]:
    """The demo's history and LIVE_MINUTES of its traffic; the KPIs after one evaluation,
    and the exceptions by kind."""
    rate = Settings(database_url=None).demo_rate
    started = time.time_ns() - int(STARTED_AGO.total_seconds()) * NS
    with running_collector(Settings(database_url=None), db_url) as collector:
        tracer, logger = telemetry(collector, "q2c-demo-middleware")
        generator = TrafficGenerator(
            tracer,
            logger,
            policy.catalog(),
            stage_systems(policy),
            "http://127.0.0.1:9",  # never called: every flow here is backdated
            mix=mix,
            deadlines=deadlines(policy),
        )
        backfill(generator, tracer, logger, HISTORY_DAYS, HISTORY_PER_DAY, end_ns=started)
        for i in range(int(LIVE_MINUTES * 60 * rate)):
            generator.transaction(started_ns=started + int(i * NS / rate))
        for provider in (tracer, logger):
            provider.shutdown()  # exports what is queued; the collector answers after commit
        generator.close()
    now = datetime.now(UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        evaluate(conn, policy, now)
        kinds = Counter(
            dict(conn.execute("SELECT kind, count(*) FROM exceptions GROUP BY kind").fetchall())
        )
    engine = create_db_engine(db_url, Settings(database_url=None))
    try:
        kpis = collect_kpis(engine, policy, timedelta(hours=24), now)
    finally:
        engine.dispose()
    return kpis, kinds


def test_the_default_demo_has_one_slo_burning_one_breached_and_a_handful_of_each_exception(
    db_url: str, policy: Policy
) -> None:
    kpis, kinds = _run_demo(db_url, policy, REALISTIC)

    slos = {name: p["sla"] for name, p in kpis["processes"].items()}
    states = {name: _state(slo) for name, slo in slos.items()}
    assert states == {
        "order_to_activation": "within",
        "invoice_posting": "burning",
        "payment_application": "within",
        "subscription_amendment": "breached",
        "customer_merge": "within",
    }, {name: slo["error_budget_remaining"] for name, slo in slos.items()}
    alerts = {name: slo["alert_state"] for name, slo in slos.items()}
    assert alerts == dict.fromkeys(slos, "ok") | {"subscription_amendment": "page"}
    assert set(kinds) == set(EXCEPTION_KINDS), kinds
    assert all(3 <= n <= 40 for n in kinds.values()), kinds


def test_the_chaos_demo_breaches_every_slo_with_exceptions_by_the_hundred(
    db_url: str, policy: Policy
) -> None:
    kpis, kinds = _run_demo(db_url, policy, CHAOS)

    budgets = {name: p["sla"]["error_budget_remaining"] for name, p in kpis["processes"].items()}
    assert all(budget < -2 for budget in budgets.values()), budgets
    assert set(kinds) == set(EXCEPTION_KINDS), kinds
    assert sum(kinds.values()) > 500 and min(kinds.values()) >= 50, kinds

"""Stage-to-stage latencies roll up exactly once, and percentiles from the rollups match
percentiles computed here from the raw latencies within 2 %."""

from __future__ import annotations

import math
import random
import threading
import time

import psycopg
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.support.otlp import NS, stage_span, traces_request

TRANSACTIONS = 240
HOUR = 3600 * NS
OBJECTIVE_MS = 10 * 60 * 1000  # invoice_posting: posted → recorded within 10 minutes


def _latencies_ms(count: int, seed: int = 5) -> list[float]:
    """Log-normally spread latencies, none within 2 % of the objective (so that the
    histogram's 1 % resolution cannot flip a transaction between good and bad)."""
    rng = random.Random(seed)
    values: list[float] = []
    while len(values) < count:
        value = round(rng.lognormvariate(math.log(90_000), 1.4), 3)
        if abs(value - OBJECTIVE_MS) > 0.02 * OBJECTIVE_MS and value < 20 * 3600 * 1000:
            values.append(value)
    return values


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def _send_with_sdk(collector: str, latencies: list[float], base_ns: int) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "invoice-flow"}))
    exporter = OTLPSpanExporter(endpoint=f"{collector}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=100))
    tracer = provider.get_tracer("q2c.tests.sla")
    for i, latency in enumerate(latencies):
        posted = base_ns + i * 10 * NS
        recorded = posted + int(latency * 1_000_000)
        common = {
            "q2c.correlation_id": f"INV-{i:05d}",
            "q2c.process": "invoice_posting",
            "q2c.invoice_id": f"INV-{i:05d}",
            "q2c.amount": 100.0 + i,
        }
        span = tracer.start_span(
            "post",
            start_time=posted - NS,
            attributes={**common, "q2c.stage": "invoice_posted", "q2c.system": "billing"},
        )
        span.end(end_time=posted)
        span = tracer.start_span(
            "record",
            start_time=recorded - NS,
            attributes={**common, "q2c.stage": "invoice_recorded", "q2c.system": "erp"},
        )
        span.end(end_time=recorded)
    assert provider.force_flush(60_000)
    provider.shutdown()


def test_percentiles_from_rollups_match_the_raw_latencies(
    collector: str, run_evaluation, kpis, db: psycopg.Connection
) -> None:
    latencies = _latencies_ms(TRANSACTIONS)
    base = time.time_ns() - 20 * HOUR
    _send_with_sdk(collector, latencies, base)

    report = run_evaluation()
    document = kpis()

    assert report.transactions == TRANSACTIONS
    measured = document["latency"]["invoice_propagation"]
    assert measured["count"] == TRANSACTIONS
    for q in (50, 90, 95, 99):
        expected = _nearest_rank(latencies, q)
        assert abs(measured[f"p{q}_ms"] - expected) / expected <= 0.02, (q, measured, expected)
    flow = document["processes"]["invoice_posting"]
    assert (flow["started"], flow["completed"]) == (TRANSACTIONS, 0)
    good = sum(1 for value in latencies if value <= OBJECTIVE_MS)
    assert (flow["sla"]["good"], flow["sla"]["total"]) == (good, TRANSACTIONS)
    assert flow["sla"]["compliance"] == round(good / TRANSACTIONS, 5)
    # both systems report the same amount on every transaction
    assert flow["reconciliation"] == {
        "checked": TRANSACTIONS,
        "matched": TRANSACTIONS,
        "accuracy": 1.0,
    }


def test_late_and_duplicated_data_is_counted_once(
    send, run_evaluation, kpis, db: psycopg.Connection
) -> None:
    base_s = -5 * 3600  # five hours ago, relative to tests.support.otlp.BASE_NS (1 h ago)
    first = [
        stage_span(
            f"LATE-{i}",
            "invoice_posting",
            "invoice_posted",
            "billing",
            at_s=base_s + i,
            seq=10_000 + 10 * i,
        )
        for i in range(6)
    ]
    late = [
        stage_span(
            f"LATE-{i}",
            "invoice_posting",
            "invoice_recorded",
            "erp",
            at_s=base_s + i + 60 * (i + 1),
            seq=20_000 + 10 * i,
        )
        for i in range(6)
    ]
    send(traces_request(*first))
    run_evaluation()
    before = kpis()["latency"]["invoice_propagation"]["count"]

    send(traces_request(*late[:3]), traces_request(*first))  # late data, and a redelivery
    run_evaluation()
    send(traces_request(*late), traces_request(*late[:3]))  # more late data, duplicated
    run_evaluation()
    run_evaluation()
    after = kpis()

    assert before == 0
    assert after["latency"]["invoice_propagation"]["count"] == 6
    assert after["processes"]["invoice_posting"]["started"] == 6
    hist_total = db.execute(
        "SELECT sum(count) FROM rollups WHERE bucket_seconds = 300 "
        "AND from_stage = 'invoice_posted' AND to_stage = 'invoice_recorded'"
    ).fetchone()[0]
    assert hist_total == 6
    # p50 of latencies 60, 120, ... 360 s (nearest rank: the 3rd) = 180 s
    assert abs(after["latency"]["invoice_propagation"]["p50_ms"] - 180_000) <= 0.01 * 180_000


def test_two_evaluators_at_once_count_every_pair_once(
    send, run_evaluation, db: psycopg.Connection
) -> None:
    spans = []
    for i in range(40):
        spans.append(
            stage_span(
                f"PAR-{i}",
                "invoice_posting",
                "invoice_posted",
                "billing",
                at_s=-7200 + i,
                seq=30_000 + 10 * i,
            )
        )
        spans.append(
            stage_span(
                f"PAR-{i}",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=-7000 + i,
                seq=40_000 + 10 * i,
            )
        )
    reports = []
    start = threading.Barrier(2)

    def evaluator() -> None:
        start.wait()
        for _ in range(5):
            reports.append(run_evaluation())

    threads = [threading.Thread(target=evaluator) for _ in range(2)]
    for thread in threads:
        thread.start()
    for chunk in range(0, len(spans), 10):
        send(traces_request(*spans[chunk : chunk + 10]))
    for thread in threads:
        thread.join()
    reports.append(run_evaluation())

    pairs = db.execute(
        "SELECT sum(count) FROM rollups WHERE bucket_seconds = 86400 "
        "AND from_stage = 'invoice_posted' AND to_stage = 'invoice_recorded'"
    ).fetchone()[0]
    assert pairs == 40
    assert sum(r.transactions for r in reports if not r.skipped) >= 40
    windows = db.execute("SELECT window_start FROM job_runs WHERE job = 'evaluate'").fetchall()
    assert (
        len(windows)
        == len(set(windows))
        == sum(1 for r in reports if not r.skipped and r.window_end > r.window_start)
    )

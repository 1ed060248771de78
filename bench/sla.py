"""SLA benchmark: evaluation cost against stored history, and KPI query time.

    python -m bench.sla [--small 10000] [--large 1000000]
                        [--kpi-small 1000000] [--kpi-large 10000000]

1. evaluation: with `--small` and then `--large` spans (and their derived history)
   already stored and evaluated, one minute of new traffic (2,500 invoice transactions of
   three stages, 30,000 spans) is stored through the collector's writer and one
   evaluation is timed; three rounds each, median reported, and the ratio large / small;
2. KPIs: with `--kpi-small` and `--kpi-large` spans stored side by side, `collect_kpis`
   over 30 days (in-process, database time included), median of five after a warm-up, on
   each history alternately for five rounds; the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from sqlalchemy import Engine

from bench._harness import bench_database, median_seconds
from bench._spans import export_requests, store_requests
from bench.background import fill
from collectors.writer import PostgresWriter
from demo.workload import kv
from q2c.database import create_db_engine
from q2c.settings import Settings
from queries.kpis import collect_kpis
from sla.evaluate import evaluate
from sla.policy import Policy, load_policy

NS = 1_000_000_000
STAGES = (
    ("invoice_posted", "billing", 0),
    ("invoice_recorded", "erp", 240),
    ("collections_notified", "collections", 1500),
)
TRANSACTIONS_PER_MINUTE = 2_500


def minute_of_traffic(round_: int) -> list[ExportTraceServiceRequest]:
    """Requests of 512 spans: every transaction's three stage spans, each with three
    technical children; 5 % of ERP postings fail first and succeed on retry."""
    now = time.time_ns() - 60 * NS
    spans: list[Span] = []
    for i in range(TRANSACTIONS_PER_MINUTE):
        correlation = f"MIN{round_}-{i:05d}"
        for stage, system, offset in STAGES:
            trace_id = (round_ * 10**9 + i * 10 + len(spans) % 7 + 1).to_bytes(16, "big")
            end = now + (i * 24_000_000) + offset * NS
            failed = stage == "invoice_recorded" and i % 20 == 0
            attrs = [
                kv("q2c.correlation_id", correlation),
                kv("q2c.process", "invoice_posting"),
                kv("q2c.stage", stage),
                kv("q2c.system", system),
                kv("q2c.amount", 100.0 + i % 997),
                kv("q2c.currency", "EUR"),
            ]
            status = Status(
                code=Status.STATUS_CODE_ERROR if failed else Status.STATUS_CODE_OK,
                message="posting rejected" if failed else "",
            )
            root = (len(spans) + 1).to_bytes(8, "big")
            spans.append(
                Span(
                    trace_id=trace_id,
                    span_id=root,
                    name=stage,
                    start_time_unix_nano=end - NS,
                    end_time_unix_nano=end,
                    attributes=attrs,
                    status=status,
                )
            )
            for child in range(3):
                spans.append(
                    Span(
                        trace_id=trace_id,
                        span_id=(len(spans) + 1).to_bytes(8, "big"),
                        parent_span_id=root,
                        name=f"child {child}",
                        start_time_unix_nano=end - NS,
                        end_time_unix_nano=end - NS // 2,
                        attributes=[kv("q2c.correlation_id", correlation)],
                    )
                )
    return export_requests(spans, "invoice-flow")


def _store(url: str, requests: list[ExportTraceServiceRequest]) -> None:
    policy = load_policy()
    writer = PostgresWriter(url, policy.catalog())
    try:
        store_requests(writer, requests)
    finally:
        writer.close()


@contextlib.contextmanager
def _history(spans: int) -> Iterator[str]:
    with bench_database() as url:
        started = time.perf_counter()
        fill(url, spans)
        print(
            f"  stored {spans:,} spans of history in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        yield url


def evaluation_seconds(spans: int, rounds: int = 3) -> float:
    """Median time of evaluating one minute of traffic with `spans` stored."""
    policy = load_policy()
    timings = []
    with _history(spans) as url, psycopg.connect(url, autocommit=True) as conn:
        evaluate(conn, policy)  # the history is already evaluated: this catches up to now
        for round_ in range(rounds):
            _store(url, minute_of_traffic(round_))
            started = time.perf_counter()
            report = evaluate(conn, policy)
            timings.append(time.perf_counter() - started)
            assert report.transactions == TRANSACTIONS_PER_MINUTE, report
    return statistics.median(timings)


def _kpi_seconds(engine: Engine, policy: Policy, runs: int = 5) -> float:
    """Median time of all KPI queries over 30 days, after a warm-up."""
    return median_seconds(lambda: collect_kpis(engine, policy, timedelta(days=30)), runs)


def kpi_rounds(small: int, large: int, rounds: int = 5) -> list[tuple[float, float]]:
    """(small, large) KPI times per round, both histories stored side by side and measured
    alternately, so that the machine's noise falls on both alike."""
    policy = load_policy()
    with _history(small) as small_url, _history(large) as large_url:
        engines = [
            create_db_engine(url, Settings(database_url=None)) for url in (small_url, large_url)
        ]
        try:
            return [
                (_kpi_seconds(engines[0], policy), _kpi_seconds(engines[1], policy))
                for _ in range(rounds)
            ]
        finally:
            for engine in engines:
                engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--kpi-small", type=int, default=1_000_000)
    parser.add_argument("--kpi-large", type=int, default=10_000_000)
    parser.add_argument("--skip-evaluation", action="store_true", help="measure KPIs only")
    args = parser.parse_args()

    if not args.skip_evaluation:
        print("evaluation of one minute of traffic (30,000 spans, 7,500 stage observations)")
        small = evaluation_seconds(args.small)
        print(f"  with {args.small:,} spans stored: {small * 1000:.0f} ms", flush=True)
        large = evaluation_seconds(args.large)
        print(f"  with {args.large:,} spans stored: {large * 1000:.0f} ms", flush=True)
        print(f"  ratio: {large / small:.2f} (target ≤ 2)")

    print("KPI queries over 30 days (q2c kpis), in-process, database time included")
    rounds = kpi_rounds(args.kpi_small, args.kpi_large)
    for small_s, large_s in rounds:
        print(
            f"  round: {args.kpi_small:,} spans {small_s * 1000:.1f} ms, "
            f"{args.kpi_large:,} spans {large_s * 1000:.1f} ms, "
            f"ratio {large_s / small_s:.2f}"
        )
    k_small = statistics.median(small_s for small_s, _ in rounds)
    k_large = statistics.median(large_s for _, large_s in rounds)
    ratio = statistics.median(large_s / small_s for small_s, large_s in rounds)
    print(
        f"  median: {k_small * 1000:.1f} ms / {k_large * 1000:.1f} ms, ratio {ratio:.2f} "
        f"(target ≤ 1.5; ≤ 100 ms at {args.kpi_large:,})"
    )


if __name__ == "__main__":
    main()

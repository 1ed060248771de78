"""Ingest benchmark: stored spans per second end to end against the COPY ceiling.

    python -m bench.ingest [--batches 300] [--clients 16] [--rounds 3] [--burst-seconds 60]

Steps 1 and 2 run as a pair, back to back on a fresh database, --rounds times; the ratio
reported is the median of the pairs' ratios (the machines are shared and noisy, so a ratio
is only trusted when both sides were measured under the same conditions).

1. ceiling: the same span rows COPYed (binary, 8,192 rows per statement) straight into a
   table indexed exactly like `spans`;
2. end to end: pre-encoded OTLP protobuf batches of 512 spans POSTed by client threads of
   this process to a `q2c collector` process over loopback, timed until every batch is
   acknowledged (acknowledgement comes after commit), with the collector's peak RSS;
3. storage: bytes per stored span, indexes included;
4. burst (after the last round): twice the median end-to-end rate for --burst-seconds;
   clients honour 429/503 Retry-After and retry; every span must be stored exactly once.
"""

from __future__ import annotations

import argparse
import http.client
import os
import queue
import statistics
import threading
import time
from dataclasses import dataclass, field

import psutil
import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from psycopg.types.json import set_json_dumps

from bench._harness import bench_database, collector_process, cpu_seconds, free_port
from collectors._pgtypes import pg_datetime
from collectors.batch import SPANS, SpanRow
from collectors.mapping import AttributeMap
from collectors.observations import Observer
from collectors.otlp import PROTOBUF, TRACES_REQUEST, parse
from collectors.traces import decode_spans, resource_spans
from collectors.window import TimeWindow
from demo.workload import SPANS_PER_BATCH, encoded_batches

COPY_CHUNK = 8_192


def _plain(span: SpanRow) -> tuple:
    """A collector span row as a plain client holds it: datetimes and JSON text (the
    collector's rows carry PostgreSQL's binary forms, see collectors._pgtypes)."""
    return span._replace(
        start_time=pg_datetime(span.start_time),
        end_time=pg_datetime(span.end_time),
        attributes=span.attributes[1:],
        events=span.events[1:] if span.events is not None else None,
    )


def measure_ceiling(url: str, batches: list[bytes]) -> float:
    """Rows per second of binary COPY into a table indexed like spans."""
    observer, window = Observer(AttributeMap()), TimeWindow(0, 2**63 - 1)
    rows = []
    for body in batches:
        resources = resource_spans(parse(body, PROTOBUF, TRACES_REQUEST))  # rows as tuples
        for span in decode_spans(resources, observer, window).spans:
            rows.append(_plain(span))
    days = {row.start_time.date() for row in rows}
    with psycopg.connect(url, autocommit=True) as conn:
        set_json_dumps(lambda already_json: already_json, context=conn)
        conn.execute(
            "CREATE TABLE ceiling_spans (LIKE spans INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            " PARTITION BY RANGE (start_time)"
        )
        conn.execute(
            "ALTER TABLE ceiling_spans ADD PRIMARY KEY "
            "(correlation_id, trace_id, span_id, start_time)"
        )
        conn.execute("CREATE INDEX ON ceiling_spans (trace_id)")
        for day in days:
            conn.execute("SELECT q2c_ensure_partition('ceiling_spans', %s)", (day,))
        columns, types = ", ".join(SPANS.columns), SPANS.types
        started = time.perf_counter()
        for offset in range(0, len(rows), COPY_CHUNK):
            statement = f"COPY ceiling_spans ({columns}) FROM STDIN (FORMAT BINARY)"
            with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as cp:
                cp.set_types(types)
                for row in rows[offset : offset + COPY_CHUNK]:
                    cp.write_row(row)
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE ceiling_spans")
    return len(rows) / elapsed


@dataclass
class SendStats:
    """What the clients saw."""

    acknowledged: int = 0
    pushed_back: int = 0
    failed: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client(port: int, jobs: queue.Queue, stats: SendStats) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/x-protobuf"}
    while (body := jobs.get()) is not None:
        while True:
            try:
                conn.request("POST", "/v1/traces", body, headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                time.sleep(0.5)
                continue
            if response.status == 200:
                with stats.lock:
                    stats.acknowledged += 1
                break
            if response.status in (429, 503):
                with stats.lock:
                    stats.pushed_back += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            with stats.lock:
                stats.failed.append(f"HTTP {response.status}")
            break
    conn.close()


def _run_clients(port: int, clients: int, feed) -> SendStats:
    stats = SendStats()
    jobs: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=_client, args=(port, jobs, stats)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    feed(jobs)
    for _ in threads:
        jobs.put(None)
    for thread in threads:
        thread.join()
    return stats


def _peak_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    """Peak resident memory of the collector and its worker processes, summed."""
    process = psutil.Process(pid)
    while not stop.wait(0.1):
        try:
            family = [process, *process.children(recursive=True)]
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in family))
        except psutil.NoSuchProcess:
            return


def _cpu_seconds(collector_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the collector (with workers), PostgreSQL, and this client."""

    collector = psutil.Process(collector_pid)
    family = [collector_pid, *(p.pid for p in collector.children(recursive=True))]
    postgres = [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    return {
        "collector": cpu_seconds(family),
        "postgres": cpu_seconds(postgres),
        "client": cpu_seconds([os.getpid()]),
    }


def _stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM spans").fetchone()[0]


def _bytes_per_span(url: str) -> tuple[float, float]:
    """(spans table with its indexes, all telemetry and derived tables) per stored span."""
    with psycopg.connect(url) as conn:
        spans = conn.execute(
            "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('spans')"
        ).fetchone()[0]
        derived = conn.execute(
            "SELECT sum(pg_total_relation_size(t::regclass)) FROM unnest(ARRAY["
            "'transactions','stage_events','exceptions','exception_occurrences','resources',"
            "'dead_letters']) t"
        ).fetchone()[0]
        count = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
    return spans / count, (spans + derived) / count


def _burst_feed(template: bytes, rate: float, seconds: float, sent: list[int]):
    """Feeds unique batches (new IDs on a template) at `rate` spans per second."""
    request = ExportTraceServiceRequest.FromString(template)
    spans = [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    import random

    rng = random.Random(11)

    def feed(jobs: queue.Queue) -> None:
        interval = SPANS_PER_BATCH / rate
        deadline = time.monotonic() + seconds
        next_at = time.monotonic()
        while next_at < deadline:
            trace_ids: dict[bytes, bytes] = {}
            for span in spans:
                span.trace_id = trace_ids.setdefault(span.trace_id, rng.randbytes(16))
                span.span_id = rng.randbytes(8)
                span.parent_span_id = b""
            jobs.put(request.SerializeToString())
            sent[0] += len(spans)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    return feed


@dataclass
class EndToEnd:
    """One end-to-end run: rate, the collector's peak memory and everyone's CPU."""

    rate: float
    peak_rss: int
    cpu_seconds: dict[str, float]
    stored: int


def measure_end_to_end(url: str, batches: list[bytes], args: argparse.Namespace) -> EndToEnd:
    """Send every batch through a fresh collector; time until the last acknowledgement."""
    port = free_port()
    with collector_process(url, port, **_collector_settings(args)) as proc:
        stop, peak = threading.Event(), [0]
        sampler = threading.Thread(target=_peak_rss, args=(proc.pid, stop, peak))
        sampler.start()
        cpu_before = _cpu_seconds(proc.pid)
        started = time.perf_counter()
        stats = _run_clients(port, args.clients, lambda jobs: [jobs.put(b) for b in batches])
        elapsed = time.perf_counter() - started
        cpu_after = _cpu_seconds(proc.pid)
        stop.set()
        sampler.join()
    stored = _stored(url)
    total = len(batches) * SPANS_PER_BATCH
    assert stored == total and not stats.failed, (stored, total, stats.failed)
    cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
    return EndToEnd(stored / elapsed, peak[0], cpu, stored)


def _collector_settings(args: argparse.Namespace, **more: str) -> dict[str, str]:
    return {
        "Q2C_RETRY_AFTER_SECONDS": "1",
        "Q2C_COLLECTOR_WORKERS": str(args.workers),
        "Q2C_WRITER_CONNECTIONS": str(args.writers),
        **more,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="ceiling/end-to-end pairs")
    parser.add_argument("--burst-seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1, help="collector worker processes")
    parser.add_argument("--writers", type=int, default=2, help="writer connections per worker")
    parser.add_argument(
        "--stages", type=int, default=1, help="stages per transaction (1: each starts one)"
    )
    parser.add_argument(
        "--failure-share", type=float, default=0.05, help="share of stage spans that fail"
    )
    args = parser.parse_args()

    print(f"generating {args.batches} batches of {SPANS_PER_BATCH} spans …", flush=True)
    batches = encoded_batches(args.batches, stages=args.stages, failure_share=args.failure_share)
    ceilings: list[float] = []
    runs: list[EndToEnd] = []
    for round_ in range(1, args.rounds + 1):
        # Each pair runs back to back on a fresh database, so both see the same machine.
        with bench_database() as url:
            ceilings.append(measure_ceiling(url, batches))
            runs.append(measure_end_to_end(url, batches, args))
            print(
                f"round {round_}: ceiling (binary COPY, same rows, same indexes) "
                f"{ceilings[-1]:,.0f} spans/s; end to end ({args.clients} clients) "
                f"{runs[-1].rate:,.0f} spans/s; ratio {runs[-1].rate / ceilings[-1]:.2f}",
                flush=True,
            )
            if round_ == args.rounds:
                spans_only, with_derived = _bytes_per_span(url)
                if args.burst_seconds > 0:
                    _burst(url, batches, statistics.median(r.rate for r in runs), args)

    ratios = [run.rate / ceiling for run, ceiling in zip(runs, ceilings, strict=True)]
    print(f"median ceiling: {statistics.median(ceilings):,.0f} spans/s")
    print(f"median end to end: {statistics.median(r.rate for r in runs):,.0f} spans/s")
    print(
        f"ratio end-to-end / ceiling: median {statistics.median(ratios):.2f} "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    print(f"collector peak RSS: {max(r.peak_rss for r in runs) / 2**20:.0f} MB")
    stored = sum(r.stored for r in runs)
    cpu = {name: sum(r.cpu_seconds[name] for r in runs) for name in runs[0].cpu_seconds}
    print(
        "CPU per stored span: "
        + ", ".join(f"{name} {seconds / stored * 1e6:.1f} µs" for name, seconds in cpu.items())
    )
    print(
        f"stored bytes per span: {spans_only:.0f} (spans + indexes), "
        f"{with_derived:.0f} (with derived rows)"
    )


def _burst(url: str, batches: list[bytes], rate: float, args: argparse.Namespace) -> None:
    """Twice `rate` for --burst-seconds into a database already holding `batches`."""
    sent = [0]
    port = free_port()
    settings = _collector_settings(args, Q2C_MAX_INFLIGHT="16")
    with collector_process(url, port, **settings):
        feed = _burst_feed(batches[0], 2 * rate, args.burst_seconds, sent)
        began = time.perf_counter()
        burst = _run_clients(port, 64, feed)
        drained = time.perf_counter() - began
    dropped = len(batches) * SPANS_PER_BATCH + sent[0] - _stored(url)
    print(
        f"burst at {2 * rate:,.0f} spans/s for {args.burst_seconds:.0f} s: "
        f"{sent[0]:,} spans sent, {burst.pushed_back:,} pushed back (429/503), "
        f"{len(burst.failed)} failed, {dropped:,} dropped, all stored after "
        f"{drained:.0f} s"
    )


if __name__ == "__main__":
    main()

"""`python -m demo.sandbox`: the demo's fake target systems and its traffic, in one process.

Serves the CRM, billing and ERP targets on 127.0.0.1:PORT, optionally backfills days of
history, then sends live transactions through the collector until SIGTERM. Every write a
target applies from a replay is reported as that stage's success, as the real system's
instrumentation would, which lets Q2C auto-resolve the replayed exception, and applied to
the systems' records. Those records (demo/records.py) are served by list endpoints
(demo/records_api.py) and, with --data-dir, billing's invoices are exported as CSV files
(demo/exports.py) under DATA_DIR/exports/billing: what the demo's reconciliations read.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import uvicorn
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from demo.exports import EXPORT_EVERY, export_billing_invoices
from demo.records import SystemsOfRecord
from demo.records_api import DEFAULT_ERP_TOKEN, ERP_TOKEN_ENV, record_routes
from demo.sink import create_sink
from demo.targets import Applied, TargetState, create_targets
from demo.traffic import CHAOS, NS, REALISTIC, TrafficGenerator
from q2c.stop_request import StopRequest
from sla.policy import Policy, load_policy

log = logging.getLogger(__name__)
HISTORY_FLUSH_EVERY = 200  # transactions between flushes, so the SDK's queue never overflows
# Enough history that each process's share (about 900 transactions) shows its fault mix's
# rates in its SLO from the first evaluation, before live traffic outweighs it.
HISTORY_PER_DAY = 1500


def telemetry(collector: str, service: str) -> tuple[TracerProvider, LoggerProvider]:
    """Tracer and logger providers of `service` that export to the collector in batches."""
    resource = Resource.create({"service.name": service, "deployment.environment.name": "demo"})
    tracer = TracerProvider(resource=resource)
    tracer.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{collector}/v1/traces"), max_queue_size=20_000
        )
    )
    logger = LoggerProvider(resource=resource)
    logger.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=f"{collector}/v1/logs"), max_queue_size=20_000
        )
    )
    return tracer, logger


def deadlines(policy: Policy) -> dict[str, tuple[str, timedelta]]:
    """process → (the last stage of its objective, the latency it should arrive within)."""
    return {
        name: (spec.objective.to_stage, spec.objective.latency)
        for name, spec in policy.processes.items()
    }


def stage_systems(policy: Policy) -> dict[tuple[str, str], str]:
    """(process, stage) → the system that reports it, from sla.yaml."""
    return {
        (name, stage.name): stage.system or "erp"
        for name, spec in policy.processes.items()
        for stage in spec.stages
    }


def _replayed_stage(applied: Applied) -> tuple[str, str, str] | None:
    """(correlation ID, process, stage) of a write a replay delivered; None for live
    traffic, whose middleware reports its own outcome."""
    # Paths are /{system}/{process}/{stage}, as the traffic generator addresses them.
    parts = applied.path.strip("/").split("/")
    headers = {k.lower(): v for k, v in applied.headers.items()}
    correlation = headers.get("x-correlation-id")
    if applied.idempotency_key is None or len(parts) != 3 or correlation is None:
        return None
    return correlation, parts[1], parts[2]


def replay_applier(tracer_provider: TracerProvider, records: SystemsOfRecord):
    """Apply a replayed write to the records, and report it as its stage's success with
    the target's own telemetry."""
    tracer = tracer_provider.get_tracer("q2c.demo.targets")

    def apply(applied: Applied) -> None:
        replayed = _replayed_stage(applied)
        if replayed is None:
            return
        correlation, process, stage = replayed
        now = time.time_ns()
        records.replayed(correlation, stage, now)
        span = tracer.start_span(
            f"{stage} (replayed)",
            start_time=now - NS // 10,
            attributes={
                "q2c.correlation_id": correlation,
                "q2c.process": process,
                "q2c.stage": stage,
                "q2c.system": applied.system,
                "q2c.replayed": True,
            },
        )
        span.end(end_time=now)

    return apply


def sandbox_app(
    records: SystemsOfRecord,
    on_applied: Callable[[Applied], None],
    erp_token: str,
    ready: threading.Event | None = None,
) -> Starlette:
    """Everything the sandbox serves: the notification sink under /sink, the systems'
    list endpoints (GET), and their write endpoints that traffic and replays POST to.
    /healthz answers 503 until `ready` is set (by default it is at once)."""
    targets = create_targets(TargetState(), on_applied)
    if ready is None:
        ready = threading.Event()
        ready.set()

    async def health(request: Request) -> JSONResponse:
        if ready.is_set():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "starting: sending the history"}, 503)

    return Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Mount("/sink", create_sink()),
            *record_routes(records, erp_token),  # before the targets' catch-all mount
            Mount("/", targets),
        ]
    )


def export_once(records: SystemsOfRecord, folder: Path) -> None:
    """Export billing's invoices into `folder`; a failed export is logged (the next turn
    of `export_continually` tries again)."""
    try:
        export_billing_invoices(records, folder)
    except OSError as exc:
        log.warning("billing export to %s failed: %s", folder, exc)


def export_continually(records: SystemsOfRecord, folder: Path, stop: StopRequest) -> None:
    """Export billing's invoices into `folder` every EXPORT_EVERY seconds until `stop`."""
    while not stop.wait(EXPORT_EVERY):
        export_once(records, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collector", required=True, help="collector base URL")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--rate", type=float, default=1.0, help="live transactions per second")
    parser.add_argument("--history-days", type=int, default=0)
    parser.add_argument("--history-per-day", type=int, default=HISTORY_PER_DAY)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--data-dir", type=Path, help="folder to export billing's files into (exports/billing)"
    )
    parser.add_argument(
        "--chaos", action="store_true", help="the heavy fault mix: every SLO soon pages"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s sandbox: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    policy = load_policy()
    middleware = telemetry(args.collector, "q2c-demo-middleware")
    target_telemetry = telemetry(args.collector, "q2c-demo-targets")
    # The customers' accounts predate the history, so they are older than any grace.
    customers_since = time.time_ns() - (args.history_days + 1) * 86_400 * NS
    records = SystemsOfRecord(seed=args.seed, since_ns=customers_since)
    erp_token = os.environ.get(ERP_TOKEN_ENV, DEFAULT_ERP_TOKEN)
    # Healthy once the history is sent and exported: the supervisor starts the scheduler
    # after the sandbox, so that the first reconciliations see whole systems of record.
    ready = threading.Event()
    app = sandbox_app(records, replay_applier(target_telemetry[0], records), erp_token, ready)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()

    stop = StopRequest().listen()
    generator = TrafficGenerator(
        *middleware,
        policy.catalog(),
        stage_systems(policy),
        f"http://127.0.0.1:{args.port}",
        mix=CHAOS if args.chaos else REALISTIC,
        seed=args.seed,
        deadlines=deadlines(policy),
        records=records,
    )
    try:
        if args.history_days:
            backfill(
                generator,
                middleware[0],
                middleware[1],
                args.history_days,
                args.history_per_day,
                stop,
            )
        if args.data_dir is not None:
            folder = args.data_dir / "exports" / "billing"
            export_once(records, folder)
            threading.Thread(
                target=export_continually, args=(records, folder, stop), daemon=True
            ).start()
        ready.set()
        log.info("sending live traffic at %.1f transactions/s", args.rate)
        while not stop.wait(1.0 / args.rate):
            generator.transaction()
    finally:
        generator.close()
        for provider in (*middleware, *target_telemetry):
            provider.shutdown()
        server.should_exit = True


def backfill(
    generator: TrafficGenerator,
    tracer: TracerProvider,
    logger: LoggerProvider,
    days: int,
    per_day: int,
    stop: StopRequest | None = None,
    end_ns: int | None = None,
) -> None:
    """Send `days` of backdated transactions, `per_day` each day, evenly spaced up to
    `end_ns` (default: now), flushing as it goes; returns once all of it is exported."""
    total = days * per_day
    start = (end_ns or time.time_ns()) - days * 86_400 * NS
    step = days * 86_400 * NS // total
    log.info("backfilling %d days of history (%d transactions)", days, total)
    for i in range(total):
        if stop is not None and stop.requested:
            return
        generator.transaction(started_ns=start + i * step)
        if i % HISTORY_FLUSH_EVERY == HISTORY_FLUSH_EVERY - 1:
            tracer.force_flush()
            logger.force_flush()
    tracer.force_flush()
    logger.force_flush()
    log.info("history sent")


if __name__ == "__main__":
    main()

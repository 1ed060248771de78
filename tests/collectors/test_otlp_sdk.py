"""The real OpenTelemetry SDK, exporting over OTLP/HTTP protobuf, lands in the canonical model."""

from __future__ import annotations

import psycopg
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.support.otlp import BASE_NS, NS

INVOICE = {"q2c.correlation_id": "INV-7001", "q2c.process": "invoice_posting"}


def _tracer_provider(collector_url: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "billing-sync"}))
    exporter = OTLPSpanExporter(endpoint=f"{collector_url}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=64))
    return provider


def test_sdk_spans_become_transactions_stage_events_and_exceptions(
    collector_url: str, db: psycopg.Connection
) -> None:
    provider = _tracer_provider(collector_url)
    tracer = provider.get_tracer("q2c.tests")
    posted = {
        **INVOICE,
        "q2c.stage": "invoice_posted",
        "q2c.system": "billing",
        "q2c.invoice_id": "INV-7001",
        "q2c.amount": 1250.0,
        "q2c.currency": "EUR",
    }
    recorded = {**INVOICE, "q2c.stage": "invoice_recorded", "q2c.system": "erp"}
    with tracer.start_as_current_span("post", attributes=posted, start_time=BASE_NS) as span:
        with tracer.start_as_current_span("http call", start_time=BASE_NS + NS) as child:
            child.end(end_time=BASE_NS + 2 * NS)
        span.end(end_time=BASE_NS + 3 * NS)
    failing = tracer.start_span("record", attributes=recorded, start_time=BASE_NS + 10 * NS)
    failing.set_attribute("error.type", "ValidationError")
    failing.set_status(Status(StatusCode.ERROR, "tax code T7 invalid for entity 42"))
    failing.end(end_time=BASE_NS + 11 * NS)
    retried = tracer.start_span("record", attributes=recorded, start_time=BASE_NS + 60 * NS)
    retried.end(end_time=BASE_NS + 61 * NS)

    assert provider.force_flush(30_000)
    provider.shutdown()

    assert db.execute("SELECT count(*) FROM spans").fetchone() == (4,)
    untagged = db.execute("SELECT correlation_id, trace_id FROM spans WHERE name = 'http call'")
    correlation_id, trace_id = untagged.fetchone()
    assert correlation_id == trace_id.hex()  # no correlation attribute: keyed by trace ID
    assert db.execute(
        "SELECT process, current_stage, stage_index, status, invoice_id, amount, currency "
        "FROM transactions WHERE correlation_id = 'INV-7001'"
    ).fetchone() == (
        "invoice_posting",
        "invoice_recorded",
        1,
        "in_progress",
        "INV-7001",
        1250,
        "EUR",
    )
    assert db.execute(
        "SELECT kind, status, occurrences, error_type, message, invoice_id, resolution "
        "FROM exceptions"
    ).fetchall() == [
        (
            "error",
            "auto_resolved",
            1,
            "ValidationError",
            "tax code T7 invalid for entity 42",
            "INV-7001",
            "stage invoice_recorded succeeded at " + _utc_text(BASE_NS + 61 * NS),
        )
    ]
    assert db.execute("SELECT actor, action FROM exception_events").fetchall() == [
        ("system", "auto_resolved")
    ]


def _utc_text(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def test_sdk_log_exporter_delivers_a_dead_letter(
    collector_url: str, db: psycopg.Connection
) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "erp-adapter"}))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{collector_url}/v1/logs"))
    )
    provider.get_logger("q2c.tests.erp").emit(
        timestamp=BASE_NS + 5 * NS,
        severity_number=SeverityNumber.ERROR,
        severity_text="ERROR",
        body='{"invoice": "INV-7002", "amount": "99.00"}',
        attributes={
            "q2c.correlation_id": "INV-7002",
            "q2c.process": "invoice_posting",
            "q2c.stage": "invoice_recorded",
            "q2c.system": "erp",
            "q2c.dead_letter": True,
            "q2c.replay.target": "http://127.0.0.1:9/erp/invoices",
            "q2c.replay.method": "PUT",
            "error.type": "PostingRejected",
        },
    )
    assert provider.force_flush(30_000)
    provider.shutdown()

    assert db.execute("SELECT count(*), min(severity_number) FROM log_records").fetchone() == (
        1,
        17,
    )
    letter = db.execute(
        "SELECT d.target_url, d.method, d.payload, d.idempotency_key LIKE 'q2c-dl-%', e.kind, "
        "e.status FROM dead_letters d JOIN exceptions e ON e.id = d.exception_id"
    ).fetchall()
    assert letter == [
        (
            "http://127.0.0.1:9/erp/invoices",
            "PUT",
            '{"invoice": "INV-7002", "amount": "99.00"}',
            True,
            "dead_letter",
            "open",
        )
    ]

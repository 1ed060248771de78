"""Hand-built OTLP requests (protobuf messages and OTLP JSON) for tests."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from demo.workload import kv

NS = 1_000_000_000
BASE_NS = (time.time_ns() // NS - 3600) * NS  # an hour ago, whole seconds


def stage_span(
    correlation_id: str,
    process: str,
    stage: str,
    system: str,
    *,
    at_s: float,
    seq: int,
    error: str | None = None,
    error_type: str = "ValidationError",
    **business: Any,
) -> Span:
    """A span reporting that `system` handled `stage` of a transaction, `at_s` seconds after
    BASE_NS; `seq` makes its IDs unique."""
    attrs = [
        kv("q2c.correlation_id", correlation_id),
        kv("q2c.process", process),
        kv("q2c.stage", stage),
        kv("q2c.system", system),
        *(kv(f"q2c.{key}", value) for key, value in business.items()),
    ]
    status = Status(code=Status.STATUS_CODE_OK)
    if error is not None:
        attrs.append(kv("error.type", error_type))
        status = Status(code=Status.STATUS_CODE_ERROR, message=error)
    end = BASE_NS + int(at_s * NS)
    return Span(
        trace_id=seq.to_bytes(16, "big"),
        span_id=(seq + 1).to_bytes(8, "big"),
        name=f"{stage} in {system}",
        kind=Span.SPAN_KIND_CONSUMER,
        start_time_unix_nano=end - 50_000_000,
        end_time_unix_nano=end,
        attributes=attrs,
        status=status,
    )


def traces_request(*spans: Span, service: str = "middleware") -> ExportTraceServiceRequest:
    """One resource, one scope, the given spans."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(kv("service.name", service))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def logs_request(*records: LogRecord, service: str = "middleware") -> ExportLogsServiceRequest:
    """One resource, one scope, the given log records."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(kv("service.name", service))
    resource_logs.scope_logs.add().log_records.extend(records)
    return request


def dead_letter_record(
    correlation_id: str,
    *,
    at_s: float,
    target: str,
    payload: str,
    stage: str = "invoice_recorded",
    headers: dict[str, str] | None = None,
    message: str = "period 2026-11 is closed",
) -> LogRecord:
    """An ERROR log record for a message that went to the dead-letter queue (with the
    stored request headers `headers` besides its Content-Type)."""
    return LogRecord(
        time_unix_nano=BASE_NS + int(at_s * NS),
        severity_number=17,
        severity_text="ERROR",
        body=AnyValue(string_value=payload),
        attributes=[
            kv("q2c.correlation_id", correlation_id),
            kv("q2c.process", "invoice_posting"),
            kv("q2c.stage", stage),
            kv("q2c.system", "erp"),
            kv("q2c.dead_letter", True),
            kv("q2c.replay.target", target),
            kv("q2c.replay.method", "POST"),
            kv("q2c.replay.header.Content-Type", "application/json"),
            *(kv(f"q2c.replay.header.{name}", value) for name, value in (headers or {}).items()),
            kv("error.type", "PostingRejected"),
            kv("exception.message", message),
        ],
    )


def otlp_json(request: Any) -> bytes:
    """An export request as OTLP JSON: protobuf JSON with hex trace and span IDs."""
    document = json_format.MessageToDict(request)

    def hex_ids(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    hex_ids(value)
        elif isinstance(node, list):
            for item in node:
                hex_ids(item)

    hex_ids(document)
    return orjson.dumps(document)

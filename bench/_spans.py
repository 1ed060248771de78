"""Spans into OTLP export requests, and requests into the database through the collector's
writer, as the benchmarks that build their own traffic need them."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collectors.batch import Batch
from collectors.mapping import AttributeMap
from collectors.observations import Observer
from collectors.traces import decode_spans, resource_spans
from collectors.window import TimeWindow
from collectors.writer import PostgresWriter
from demo.workload import kv

SPANS_PER_REQUEST = 512
REQUESTS_PER_GROUP = 16  # as many as the collector's group commit takes at once


def export_requests(spans: list[Span], service: str) -> list[ExportTraceServiceRequest]:
    """`spans` as export requests of SPANS_PER_REQUEST spans, one resource (`service`) each."""
    requests = []
    for offset in range(0, len(spans), SPANS_PER_REQUEST):
        request = ExportTraceServiceRequest()
        resource = request.resource_spans.add()
        resource.resource.attributes.append(kv("service.name", service))
        resource.scope_spans.add().spans.extend(spans[offset : offset + SPANS_PER_REQUEST])
        requests.append(request)
    return requests


def store_requests(writer: PostgresWriter, requests: list[ExportTraceServiceRequest]) -> None:
    """Decode and store `requests` through `writer`, REQUESTS_PER_GROUP per transaction."""
    observer, window = Observer(AttributeMap()), TimeWindow(0, 2**63 - 1)
    for offset in range(0, len(requests), REQUESTS_PER_GROUP):
        group = Batch()
        for request in requests[offset : offset + REQUESTS_PER_GROUP]:
            group.extend(decode_spans(resource_spans(request), observer, window))
        writer.write(group)

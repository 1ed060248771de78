"""OTLP trace export requests → span rows and the observations they carry.

Protobuf bodies of the common shape are read by the compiled reader in collectors/_wire.c
when it is built: it writes the COPY row of each span that needs nothing else (no stage to
observe, nothing to reject) straight from the body, and gives the other spans as plain
values (`ResourceSpans`). Other bodies (JSON, or protobuf it leaves to the runtime) are read
into the same plain values by the protobuf runtime. Rows of plain values are built in C
(`span_rows`) for spans that need only a row or are stage spans without status or
dead-letter attributes (row and observation, failures included), here for those to reject
with a reason, spans with events, status or dead-letter attributes and anything out of the
common shape. Every path stores exactly the same rows.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from collectors import otlp
from collectors._compiled import wire
from collectors._pgtypes import jsonb, pg_time
from collectors._values import attributes, clean_text
from collectors.batch import Batch
from collectors.observations import Observer
from collectors.window import NS_PER_DAY, TimeWindow

_STATUS_ERROR = 2
_SPAN_KINDS = range(6)  # SpanKind: UNSPECIFIED … CONSUMER
_STATUS_CODES = range(3)  # Status.StatusCode: UNSET, OK, ERROR
_NO_TRACE = bytes(16)
_NO_SPAN = bytes(8)
_MAX_U64 = 2**64 - 1

# (resource attributes, spans): a span is (trace_id, span_id, parent_span_id, name, kind,
# start_ns, end_ns, attributes, attributes as binary jsonb, events, status_code,
# status_message) and an event is (name, time_ns, attributes). The attributes hold at
# least those the observer reads (the compiled reader makes no others).
ResourceSpans = tuple[dict[str, Any], list[tuple]]


def decode_traces(body: bytes, kind: str, observer: Observer, window: TimeWindow) -> Batch:
    """Rows for every acceptable span of an ExportTraceServiceRequest body (the rest are
    counted in `Batch.rejected` with their reasons); raises otlp.BadRequest."""
    if kind == otlp.PROTOBUF and wire is not None:
        batch = Batch()
        earliest, latest = _bounds(window)

        def context(res_attrs: dict[str, Any]) -> tuple[dict[str, Any], str, bytes | None]:
            res_key, service = resource_key(res_attrs, batch)
            return observer.readable(res_attrs), service, res_key

        direct = (context, observer.correlation_keys, observer.compiled, earliest, latest,
                  batch.days)  # fmt: skip
        read = wire.read_traces(body, observer.read_keys, observer.read_prefixes, direct)
        if read is not None:
            resources, rows, count, observations = read
            batch.encoded_spans.append(rows)
            batch.encoded_span_count = count
            batch.encoded_observations.append(observations)
            for res_attrs, (readable, service, res_key), spans in resources:
                _decode_resource(batch, spans, res_attrs, readable, service, res_key, observer,
                                 window)  # fmt: skip
            return batch
    request = otlp.parse(body, kind, otlp.TRACES_REQUEST)
    return decode_spans(resource_spans(request), observer, window)


def resource_spans(request: Any) -> list[ResourceSpans]:
    """The spans of a parsed ExportTraceServiceRequest message."""
    return [
        (
            attributes(rs.resource.attributes),
            [_span_values(span) for scope_spans in rs.scope_spans for span in scope_spans.spans],
        )
        for rs in request.resource_spans
    ]


def _span_values(span: Any) -> tuple:
    attrs = attributes(span.attributes)
    events = [(e.name, e.time_unix_nano, attributes(e.attributes)) for e in span.events]
    return (
        span.trace_id, span.span_id, span.parent_span_id, span.name, span.kind,
        span.start_time_unix_nano, span.end_time_unix_nano, attrs, jsonb(attrs), events,
        span.status.code, span.status.message,
    )  # fmt: skip


def resource_key(res_attrs: dict[str, Any], batch: Batch) -> tuple[bytes | None, str]:
    """Register a resource (by its attributes) in the batch; returns (hash, service name)."""
    service = clean_text(str(res_attrs.get("service.name", "")))
    if not res_attrs:
        return None, service
    canonical = orjson.dumps(res_attrs, option=orjson.OPT_SORT_KEYS)
    key = hashlib.blake2b(canonical, digest_size=8).digest()
    if key not in batch.resources:
        batch.resources[key] = (key, service, jsonb(res_attrs))
    return key, service


def decode_spans(resources: list[ResourceSpans], observer: Observer, window: TimeWindow) -> Batch:
    """Rows for every acceptable span; the rest are counted in `Batch.rejected` with their
    reasons."""
    batch = Batch()
    for res_attrs, spans in resources:
        res_key, service = resource_key(res_attrs, batch)
        readable = observer.readable(res_attrs)
        _decode_resource(batch, spans, res_attrs, readable, service, res_key, observer, window)
    return batch


def _bounds(window: TimeWindow) -> tuple[int, int]:
    """The window's bounds as unsigned 64-bit integers, for the compiled code."""
    return max(window.earliest_ns, 0), min(window.latest_ns, _MAX_U64)


def _decode_resource(
    batch: Batch,
    spans: list[tuple],
    res_attrs: dict[str, Any],
    readable: dict[str, Any],
    service: str,
    res_key: bytes | None,
    observer: Observer,
    window: TimeWindow,
) -> None:
    """Rows (and observations) of one resource's spans, given as plain values."""
    if wire is not None and spans:  # the common spans get their row (and observation) in C
        earliest, latest = _bounds(window)
        spans = wire.span_rows(
            spans, readable, service, res_key, observer.correlation_keys, observer.compiled,
            earliest, latest, batch.spans, batch.observations, batch.days,
        )  # fmt: skip
    for span in spans:
        _add_span(batch, span, observer, window, res_key, service, res_attrs)


def _add_span(
    batch: Batch,
    span: tuple,
    observer: Observer,
    window: TimeWindow,
    res_key: bytes | None,
    service: str,
    res_attrs: dict[str, Any],
) -> None:
    (trace_id, span_id, parent, name, kind, start, end, attrs, attrs_jsonb, span_events,
     status_code, status_message) = span  # fmt: skip
    if len(trace_id) != 16 or trace_id == _NO_TRACE:
        return batch.reject("invalid trace_id (must be 16 non-zero bytes)")
    if len(span_id) != 8 or span_id == _NO_SPAN:
        return batch.reject("invalid span_id (must be 8 non-zero bytes)")
    if parent and len(parent) != 8:
        return batch.reject("invalid parent_span_id (must be 8 bytes or empty)")
    if end < start:
        return batch.reject("span ends before it starts")
    if kind not in _SPAN_KINDS:
        return batch.reject(f"unknown span kind {kind} (SpanKind is 0-5)")
    if status_code not in _STATUS_CODES:
        return batch.reject(f"unknown status code {status_code} (StatusCode is 0-2)")
    if not window.earliest_ns <= start <= window.latest_ns:  # hot path: check inline first
        return batch.reject(window.rejects(start) or "timestamp outside the accepted window")

    merged = {**res_attrs, **attrs} if res_attrs else attrs
    correlation_id = observer.correlation_id(merged, trace_id)
    assert correlation_id is not None  # the trace ID is the fallback
    failed = status_code == _STATUS_ERROR
    error_type = message = None
    events = None
    if span_events:
        events = []
        for event_name, event_time, event_attrs in span_events:
            events.append(
                {"name": event_name, "time_unix_nano": event_time, "attributes": event_attrs}
            )
            if event_name == "exception":
                error_type = error_type or _text(event_attrs.get("exception.type"))
                message = message or _text(event_attrs.get("exception.message"))
    key = trace_id + span_id
    status_message = clean_text(status_message) or None
    batch.spans.append(
        (
            correlation_id, trace_id, span_id, pg_time(start), pg_time(end), parent or None,
            clean_text(name), kind, status_code, status_message, service, res_key, attrs_jsonb,
            jsonb(events) if events is not None else None,
        )
    )  # fmt: skip
    batch.days.add(start // NS_PER_DAY)
    observed = merged
    if events and (dead := _dead_letter_event(events, observer)) is not None:
        # A dead-lettered message recorded as a span event: the span's failure carries it.
        observed, failed = {**merged, **dead["attributes"]}, True
        message = message or dead["name"]
    observer.observe(
        batch,
        record_key=key,
        attrs=observed,
        correlation_id=correlation_id,
        service_name=service,
        at_ns=end,
        failed=failed,
        error_type=error_type,
        message=message or status_message,
        trace_id=trace_id,
        span_id=span_id,
    )


def _dead_letter_event(events: list[dict[str, Any]], observer: Observer) -> dict[str, Any] | None:
    """The first span event flagged as a dead letter, if any."""
    for event in events:
        if observer.mapping.lookup("dead_letter", event["attributes"]) is not None:
            return event
    return None


def _text(value: object) -> str | None:
    return None if value is None else clean_text(str(value))

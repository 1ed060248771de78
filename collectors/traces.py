"""OTLP trace export requests → span rows and the observations they carry.

Protobuf bodies are read by the compiled reader (collectors/_wire.c) when it is built, any
other body (JSON, or protobuf the reader leaves to the runtime) by the protobuf runtime.
Both give each span as the same plain values (`SpanValues`); every decision about them —
whether a span is valid, its correlation ID, whether it observes a stage — is made here.
The compiled reader also gives most spans' columns already encoded for COPY (`fields`, in
the order LAYOUT names), so that such a span's row costs no Python value but its first
three columns. Both readers store exactly the same rows.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import orjson

from collectors import _compiled, otlp
from collectors._pgtypes import JSONB_VERSION, jsonb, pg_time
from collectors._values import as_text, attributes, clean_text, to_json
from collectors.batch import SPANS, Batch, ResourceRow, SpanRow
from collectors.observations import Observer
from collectors.window import NS_PER_DAY, TimeWindow

_STATUS_ERROR = 2
_SPAN_KINDS = range(6)  # SpanKind: UNSPECIFIED … CONSUMER
_STATUS_CODES = range(3)  # Status.StatusCode: UNSET, OK, ERROR
_NO_TRACE = bytes(16)
_NO_SPAN = bytes(8)
_LATEST_NS = 2**63 - 1  # the latest moment an observation (int8 nanoseconds) can hold

# The span columns the compiled reader encodes, by its letters (collectors/_wire.c, LAYOUT),
# in the order SpanRow declares them after the ones Python fills.
_READER_LETTERS = {
    "trace_id": "T",
    "span_id": "I",
    "parent_span_id": "P",
    "start_time": "S",
    "end_time": "E",
    "name": "N",
    "status_message": "M",
    "kind": "K",
    "status_code": "C",
    "attributes": "A",
    "events": "V",
}
PYTHON_COLUMNS = tuple(c for c in SPANS.columns if c not in _READER_LETTERS)
LAYOUT = "".join(_READER_LETTERS[c] for c in SPANS.columns[len(PYTHON_COLUMNS) :])
assert SPANS.columns[: len(PYTHON_COLUMNS)] == PYTHON_COLUMNS, "reader columns come last"


class SpanValues(NamedTuple):
    """A span as either reader gives it. `selected` holds at least the attributes the
    observer reads (JSON text from the compiled reader, a dict from the runtime); `fields`
    are its columns after the first three as COPY fields, or None — then `name` and
    `attributes` (as binary jsonb) are given; `events` are JSON text or a list of
    {name, time_unix_nano, attributes}, None when there are none."""

    selected: bytes | dict[str, Any]
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    kind: int
    status_code: int
    start_ns: int
    end_ns: int
    status_message: str | None
    fields: bytes | None
    name: str | None
    attributes: bytes | None
    events: bytes | list[dict[str, Any]] | None


# Positions in SpanValues (the compiled reader gives plain tuples), for the hot path.
_SELECTED, _TRACE_ID, _STATUS_CODE, _START, _FIELDS, _EVENTS = (
    SpanValues._fields.index(name)
    for name in ("selected", "trace_id", "status_code", "start_ns", "fields", "events")
)


class _Resource(NamedTuple):
    """What a resource's spans share: its key, service name and observable attributes, and
    `unobserved`: span attributes (JSON text) naming no stage, with the correlation ID they
    name ("" for none)."""

    key: bytes | None
    service: str
    readable: dict[str, Any]
    unobserved: dict[bytes, str]


def decode_traces(body: bytes, kind: str, observer: Observer, window: TimeWindow) -> Batch:
    """Rows for every acceptable span of an ExportTraceServiceRequest body (the rest are
    counted in `Batch.rejected` with their reasons); raises otlp.BadRequest."""
    wire = _compiled.wire
    if kind == otlp.PROTOBUF and wire is not None:
        read = wire.read_traces(body, observer.read_keys, observer.read_prefixes, LAYOUT)
        if read is not None:
            return decode_spans(
                [(orjson.loads(res_attrs), spans) for res_attrs, spans in read], observer, window
            )
    request = otlp.parse(body, kind, otlp.TRACES_REQUEST)
    return decode_spans(resource_spans(request), observer, window)


def resource_spans(request: Any) -> list[tuple[dict[str, Any], list[SpanValues]]]:
    """The spans of a parsed ExportTraceServiceRequest message, as SpanValues."""
    return [
        (
            attributes(rs.resource.attributes),
            [_span_values(span) for scope_spans in rs.scope_spans for span in scope_spans.spans],
        )
        for rs in request.resource_spans
    ]


def _span_values(span: Any) -> SpanValues:
    attrs = attributes(span.attributes)
    events = [
        {"name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": attributes(e.attributes)}
        for e in span.events
    ]
    return SpanValues(
        attrs,
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        span.kind,
        span.status.code,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        span.status.message or None,
        None,
        span.name,
        jsonb(attrs),
        events or None,
    )


def resource_key(res_attrs: dict[str, Any], batch: Batch) -> tuple[bytes | None, str]:
    """Register a resource (by its attributes) in the batch; returns (hash, service name)."""
    service = clean_text(str(res_attrs.get("service.name", "")))
    if not res_attrs:
        return None, service
    # As stored, without NUL characters: the compiled reader gives them so.
    key = hashlib.blake2b(to_json(res_attrs, sort_keys=True), digest_size=8).digest()
    if key not in batch.resources:
        batch.resources[key] = ResourceRow(key, service, jsonb(res_attrs))
    return key, service


def decode_spans(
    resources: list[tuple[dict[str, Any], list]], observer: Observer, window: TimeWindow
) -> Batch:
    """Rows for every acceptable span; the rest are counted in `Batch.rejected` with their
    reasons."""
    batch = Batch()
    encoded, days = batch.encoded_spans, batch.days
    for res_attrs, spans in resources:
        key, service = resource_key(res_attrs, batch)
        resource = _Resource(key, service, observer.readable(res_attrs), {})
        for span in spans:
            if (reason := _problem(span, window)) is not None:
                batch.reject(reason)
            elif (
                # Hot path, most spans: encoded by the reader, no events, not failed, and
                # naming no stage; only their correlation ID is needed.
                (fields := span[_FIELDS]) is not None
                and span[_EVENTS] is None
                and span[_STATUS_CODE] != _STATUS_ERROR
                and (correlation_id := _unobserved(span[_SELECTED], observer, resource)) is not None
            ):
                encoded.append((correlation_id or span[_TRACE_ID].hex(), service, key, fields))
                days.add(span[_START] // NS_PER_DAY)
            else:
                _add_span(batch, span, observer, resource)
    return batch


def _unobserved(selected: bytes, observer: Observer, resource: _Resource) -> str | None:
    """For the attributes of a span as the compiled reader gives them (JSON text): the
    correlation ID they name ("" for none) if they surely name no stage, else None. Spans
    of one resource often repeat their attributes: each is read once."""
    known = resource.unobserved.get(selected)
    if known is None and observer.surely_unobserved(resource.readable, selected):
        attrs = orjson.loads(selected)
        merged = {**resource.readable, **attrs} if resource.readable else attrs
        known = resource.unobserved[selected] = observer.correlation_id(merged, None) or ""
    return known


def _problem(span: SpanValues | tuple, window: TimeWindow) -> str | None:
    """Why a span cannot be stored, or None."""
    trace_id, span_id, parent, kind, status_code, start, end = span[1:8]
    if len(trace_id) != 16 or trace_id == _NO_TRACE:
        return "invalid trace_id (must be 16 non-zero bytes)"
    if len(span_id) != 8 or span_id == _NO_SPAN:
        return "invalid span_id (must be 8 non-zero bytes)"
    if parent and len(parent) != 8:
        return "invalid parent_span_id (must be 8 bytes or empty)"
    if end < start:
        return "span ends before it starts"
    if end > _LATEST_NS:
        return "span ends after the year 2262 (end_time_unix_nano beyond 2^63 - 1)"
    if kind not in _SPAN_KINDS:
        return f"unknown span kind {kind} (SpanKind is 0-5)"
    if status_code not in _STATUS_CODES:
        return f"unknown status code {status_code} (StatusCode is 0-2)"
    if not window.earliest_ns <= start <= window.latest_ns:
        return window.rejects(start) or "timestamp outside the accepted window"
    return None


def _add_span(batch: Batch, span: tuple, observer: Observer, resource: _Resource) -> None:
    """The rows of a valid span: its own, its observation and dead letter if any."""
    (
        selected,
        trace_id,
        span_id,
        parent,
        kind,
        status_code,
        start,
        end,
        status_message,
        fields,
        name,
        attrs_jsonb,
        events,
    ) = span
    if selected.__class__ is bytes:
        selected = orjson.loads(selected)
    events_jsonb = None
    if events.__class__ is bytes:
        events_jsonb, events = JSONB_VERSION + events, orjson.loads(events)
    merged = {**resource.readable, **selected} if resource.readable else selected
    correlation_id = observer.correlation_id(merged, trace_id)
    assert correlation_id is not None  # the trace ID is the fallback
    failed = status_code == _STATUS_ERROR
    error_type = message = None
    observed = merged
    for event in events or ():
        if event["name"] == "exception":
            error_type = error_type or as_text(event["attributes"].get("exception.type"))
            message = message or as_text(event["attributes"].get("exception.message"))
    if events and (dead := _dead_letter_event(events, observer)) is not None:
        # A dead-lettered message recorded as a span event: the span's failure carries it.
        observed, failed = {**merged, **dead["attributes"]}, True
        message = message or dead["name"]
    status_message = clean_text(status_message) or None if status_message else None
    rejected = observer.observe(
        batch,
        record_key=trace_id + span_id,
        attrs=observed,
        correlation_id=correlation_id,
        service_name=resource.service,
        at_ns=end,
        failed=failed,
        error_type=error_type,
        message=message or status_message,
        trace_id=trace_id,
        span_id=span_id,
    )
    if rejected is not None:
        return batch.reject(rejected)
    if fields is not None:
        batch.encoded_spans.append((correlation_id, resource.service, resource.key, fields))
    else:
        if events and events_jsonb is None:
            events_jsonb = jsonb(events)
        batch.spans.append(
            SpanRow(
                correlation_id,
                resource.service,
                resource.key,
                trace_id,
                span_id,
                pg_time(start),
                pg_time(end),
                parent or None,
                clean_text(name or ""),
                kind,
                status_code,
                status_message,
                attrs_jsonb,
                events_jsonb,
            )
        )
    batch.days.add(start // NS_PER_DAY)
    return None


def _dead_letter_event(events: list[dict[str, Any]], observer: Observer) -> dict[str, Any] | None:
    """The first span event flagged as a dead letter, if any."""
    for event in events:
        if observer.mapping.lookup("dead_letter", event["attributes"]) is not None:
            return event
    return None

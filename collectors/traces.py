"""OTLP trace export requests → span rows and the observations they carry."""

from __future__ import annotations

import hashlib
from typing import Any

from collectors._values import attributes, clean_text, to_json
from collectors.batch import Batch
from collectors.observations import Observer
from collectors.window import NS_PER_DAY, TimeWindow

_STATUS_ERROR = 2
_NO_TRACE = bytes(16)
_NO_SPAN = bytes(8)


def resource_key(resource: Any, batch: Batch) -> tuple[bytes | None, str, dict[str, Any]]:
    """Register the resource in the batch; returns (hash, service name, attributes)."""
    res_attrs = attributes(resource.attributes)
    service = clean_text(str(res_attrs.get("service.name", "")))
    if not res_attrs:
        return None, service, res_attrs
    digest = hashlib.blake2b(resource.SerializeToString(deterministic=True), digest_size=8)
    key = digest.digest()
    if key not in batch.resources:
        batch.resources[key] = (key, service, to_json(res_attrs))
    return key, service, res_attrs


def decode_spans(request: Any, observer: Observer, window: TimeWindow) -> Batch:
    """Rows for every acceptable span of an ExportTraceServiceRequest; the rest are counted
    in `Batch.rejected` with their reasons."""
    batch = Batch()
    for resource_spans in request.resource_spans:
        res_key, service, res_attrs = resource_key(resource_spans.resource, batch)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                _add_span(batch, span, observer, window, res_key, service, res_attrs)
    return batch


def _add_span(
    batch: Batch,
    span: Any,
    observer: Observer,
    window: TimeWindow,
    res_key: bytes | None,
    service: str,
    res_attrs: dict[str, Any],
) -> None:
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    if len(trace_id) != 16 or trace_id == _NO_TRACE:
        return batch.reject("invalid trace_id (must be 16 non-zero bytes)")
    if len(span_id) != 8 or span_id == _NO_SPAN:
        return batch.reject("invalid span_id (must be 8 non-zero bytes)")
    if parent and len(parent) != 8:
        return batch.reject("invalid parent_span_id (must be 8 bytes or empty)")
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if end < start:
        return batch.reject("span ends before it starts")
    if not window.earliest_ns <= start <= window.latest_ns:  # hot path: check inline first
        return batch.reject(window.rejects(start) or "timestamp outside the accepted window")

    attrs = attributes(span.attributes)
    merged = {**res_attrs, **attrs} if res_attrs else attrs
    correlation_id = observer.correlation_id(merged, trace_id)
    assert correlation_id is not None  # the trace ID is the fallback
    status = span.status
    failed = status.code == _STATUS_ERROR
    error_type = message = None
    events = None
    if span.events:
        events = []
        for event in span.events:
            event_attrs = attributes(event.attributes)
            events.append(
                {
                    "name": event.name,
                    "time_unix_nano": event.time_unix_nano,
                    "attributes": event_attrs,
                }
            )
            if event.name == "exception":
                error_type = error_type or _text(event_attrs.get("exception.type"))
                message = message or _text(event_attrs.get("exception.message"))
    key = trace_id + span_id
    status_message = clean_text(status.message) or None
    batch.spans.append(
        (
            correlation_id, trace_id, span_id, start, end, parent or None, clean_text(span.name),
            span.kind, status.code, status_message, service, res_key, to_json(attrs),
            to_json(events) if events is not None else None,
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

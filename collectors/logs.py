"""OTLP log export requests → log rows and the observations they carry."""

from __future__ import annotations

import hashlib
from typing import Any

from collectors._pgtypes import jsonb, pg_time
from collectors._values import any_value, attributes, clean_text
from collectors.batch import Batch, LogRow
from collectors.observations import Observer
from collectors.traces import resource_key
from collectors.window import NS_PER_DAY, TimeWindow

_SEVERITY_ERROR = 17  # SEVERITY_NUMBER_ERROR and above are failures
_SEVERITY_NUMBERS = range(25)  # SeverityNumber: UNSPECIFIED … FATAL4


def decode_logs(request: Any, observer: Observer, window: TimeWindow) -> Batch:
    """Rows for every acceptable record of an ExportLogsServiceRequest; the rest are counted
    in `Batch.rejected` with their reasons."""
    batch = Batch()
    for resource_logs in request.resource_logs:
        res_attrs = attributes(resource_logs.resource.attributes)
        res_key, service = resource_key(res_attrs, batch)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                _add_record(batch, record, observer, window, res_key, service, res_attrs)
    return batch


def _add_record(
    batch: Batch,
    record: Any,
    observer: Observer,
    window: TimeWindow,
    res_key: bytes | None,
    service: str,
    res_attrs: dict[str, Any],
) -> None:
    time_ns = record.time_unix_nano or record.observed_time_unix_nano
    if not time_ns:
        return batch.reject("log record has neither time nor observed time")
    if reason := window.rejects(time_ns):
        return batch.reject(reason)
    trace_id, span_id = record.trace_id or None, record.span_id or None
    if trace_id is not None and len(trace_id) != 16:
        return batch.reject("invalid trace_id (must be 16 bytes or empty)")
    if span_id is not None and len(span_id) != 8:
        return batch.reject("invalid span_id (must be 8 bytes or empty)")
    if record.severity_number not in _SEVERITY_NUMBERS:
        return batch.reject(f"unknown severity number {record.severity_number} (0-24)")

    # Identity of a record is its content: a redelivered record hashes the same.
    digest = hashlib.blake2b(res_key or b"", digest_size=16)
    digest.update(record.SerializeToString(deterministic=True))
    record_hash = digest.digest()
    attrs = attributes(record.attributes)
    merged = {**res_attrs, **attrs} if res_attrs else attrs
    correlation_id = observer.correlation_id(merged, trace_id) or record_hash.hex()
    body = any_value(record.body) if record.HasField("body") else None
    rejected = observer.observe(
        batch,
        record_key=record_hash,
        attrs=merged,
        correlation_id=correlation_id,
        service_name=service,
        at_ns=time_ns,
        failed=record.severity_number >= _SEVERITY_ERROR,
        error_type=None,
        message=clean_text(body) if isinstance(body, str) else None,
        trace_id=trace_id,
        span_id=span_id,
        payload=body,
    )
    if rejected is not None:
        return batch.reject(rejected)
    batch.logs.append(
        LogRow(
            correlation_id,
            record_hash,
            pg_time(time_ns),
            pg_time(observed) if (observed := record.observed_time_unix_nano) else None,
            trace_id,
            span_id,
            record.severity_number,
            clean_text(record.severity_text) or None,
            jsonb(body) if body is not None else None,
            jsonb(attrs),
            service,
            res_key,
            "otlp",
        )
    )
    batch.days.add(time_ns // NS_PER_DAY)
    return None

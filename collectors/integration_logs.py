"""Middleware integration logs: JSON lines (or a JSON array) in Q2C's documented schema
(docs/integration-logs.md), turned into log rows and observations like OTLP logs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from collectors._pgtypes import jsonb, pg_time
from collectors._values import clean_text
from collectors.batch import Batch, LogRow
from collectors.mapping import BUSINESS_FIELDS, AttributeMap
from collectors.observations import Observer
from collectors.window import NS_PER_DAY, TimeWindow

_SEVERITY = {"ok": (9, "INFO"), "error": (17, "ERROR")}
_OBSERVER = Observer(AttributeMap())  # the schema is ours, so the default keys apply
_TEXT_FIELDS = ("process", "stage", "system", "error_type", "error_message", "message")
_MAX_DEPTH = 254  # levels of nesting orjson writes


@dataclass
class ParsedLog:
    """Rows of the records that parsed, and (line number, reason) for those that did not."""

    batch: Batch = field(default_factory=Batch)
    errors: list[tuple[int, str]] = field(default_factory=list)
    accepted: int = 0


def split_records(body: bytes, first_line: int = 1) -> Iterable[tuple[int, Any]]:
    """(line number, decoded JSON or the decoding error) for a JSON array or JSON lines."""
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            yield first_line, ValueError(f"invalid JSON array: {exc}")
            return
        for index, item in enumerate(items):
            yield first_line + index, item
        return
    for offset, line in enumerate(body.splitlines()):
        if not line.strip():
            continue
        try:
            yield first_line + offset, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield first_line + offset, ValueError(f"invalid JSON: {exc}")


def parse_records(records: Iterable[tuple[int, Any]], window: TimeWindow) -> ParsedLog:
    """Validate and convert numbered records; every refusal names its line."""
    parsed = ParsedLog()
    for line, record in records:
        if isinstance(record, Exception):
            parsed.errors.append((line, str(record)))
            continue
        reason = _add_record(parsed.batch, record, window)
        if reason is None:
            parsed.accepted += 1
        else:
            parsed.errors.append((line, reason))
    parsed.batch.rejected = len(parsed.errors)
    return parsed


def _add_record(batch: Batch, record: Any, window: TimeWindow) -> str | None:
    if not isinstance(record, dict):
        return "a record must be a JSON object"
    correlation_id = record.get("correlation_id")
    if not isinstance(correlation_id, str) or not correlation_id.strip():
        return "correlation_id is required (a non-empty string)"
    try:
        time_ns = parse_timestamp(record.get("timestamp"))
    except ValueError as exc:
        return str(exc)
    if reason := window.rejects(time_ns):
        return reason
    status = str(record.get("status", "ok")).lower()
    if status not in _SEVERITY:
        return f"status must be 'ok' or 'error', not {record.get('status')!r}"
    for name in _TEXT_FIELDS:
        if record.get(name) is not None and not isinstance(record[name], str):
            return f"{name} must be a string"
    try:
        trace_id = _hex_id(record.get("trace_id"), 16, "trace_id")
        span_id = _hex_id(record.get("span_id"), 8, "span_id")
    except ValueError as exc:
        return str(exc)

    target = record.get("replay_target")
    if target is not None and not isinstance(target, str):
        return "replay_target must be a string (a URL)"
    # Not taken by their truth: "false" would have made a dead letter.
    if record.get("dead_letter") is not None and not isinstance(record["dead_letter"], bool):
        return "dead_letter must be true or false"
    headers = record.get("replay_headers")
    if headers is not None and not isinstance(headers, dict):
        return "replay_headers must be an object (header name → value)"

    correlation_id = clean_text(correlation_id.strip())[:256]
    try:  # orjson reads deeper documents than it writes: such a record is refused here
        canonical = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return f"the record nests JSON deeper than {_MAX_DEPTH} levels"
    record_hash = hashlib.blake2b(canonical, digest_size=16).digest()
    attrs = _canonical_attributes(record)
    severity_number, severity_text = _SEVERITY[status]
    system = clean_text(str(record.get("system") or ""))
    message = record.get("message") or record.get("error_message")
    rejected = _OBSERVER.observe(
        batch,
        record_key=record_hash,
        attrs=attrs,
        correlation_id=correlation_id,
        service_name=system,
        at_ns=time_ns,
        failed=status == "error",
        error_type=record.get("error_type"),
        message=record.get("error_message") or message,
        trace_id=trace_id,
        span_id=span_id,
        payload=record.get("payload"),
    )
    if rejected is not None:
        return rejected
    stored_attrs = {k: v for k, v in record.items() if k != "payload"}
    batch.logs.append(
        LogRow(
            correlation_id,
            record_hash,
            pg_time(time_ns),
            None,
            trace_id,
            span_id,
            severity_number,
            severity_text,
            jsonb(message) if message is not None else None,
            jsonb(stored_attrs),
            system,
            None,
            "integration_log",
        )
    )
    batch.days.add(time_ns // NS_PER_DAY)
    return None


def _canonical_attributes(record: dict[str, Any]) -> dict[str, Any]:
    """The record's fields under the default attribute keys the Observer reads."""
    attrs: dict[str, Any] = {}
    for name in ("process", "stage", "system", "status", *BUSINESS_FIELDS):
        if record.get(name) is not None:
            attrs[f"q2c.{name}"] = record[name]
    if record.get("error_type") is not None:
        attrs["error.type"] = record["error_type"]
    target = record.get("replay_target")
    dead = record.get("dead_letter")
    if dead is None:
        dead = target is not None and str(record.get("status", "ok")).lower() == "error"
    if dead:
        attrs["q2c.dead_letter"] = True
        attrs["q2c.replay.target"] = target
        attrs["q2c.replay.method"] = record.get("replay_method") or "POST"
        for name, value in (record.get("replay_headers") or {}).items():
            attrs[f"q2c.replay.header.{name}"] = value
    return attrs


def parse_timestamp(value: Any) -> int:
    """Unix nanoseconds from RFC 3339 text (no zone means UTC) or a number of seconds,
    milliseconds, microseconds or nanoseconds since the epoch (told apart by size)."""
    if isinstance(value, bool) or value is None:
        raise ValueError("timestamp is required (RFC 3339 text or epoch number)")
    if isinstance(value, int | float):
        magnitude = abs(value)
        scale = (
            1
            if magnitude > 1e17
            else 1_000
            if magnitude > 1e14
            else (1_000_000 if magnitude > 1e11 else 1_000_000_000)
        )
        return int(value * scale)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"timestamp {value[:40]!r} is not RFC 3339") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    raise ValueError("timestamp must be RFC 3339 text or an epoch number")


def _hex_id(value: Any, size: int, name: str) -> bytes | None:
    if value in (None, ""):
        return None
    try:
        raw = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {size * 2} hex digits") from None
    if len(raw) != size:
        raise ValueError(f"{name} must be {size * 2} hex digits")
    return raw

"""From one span or log record to the business facts it carries: a stage observation
(correlation ID, process, stage, system, time, success or failure, business keys) and,
for a dead-lettered message, the message itself."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from collectors._pgtypes import jsonb
from collectors._values import clean_text, to_json
from collectors.batch import Batch
from collectors.mapping import BUSINESS_FIELDS, AttributeMap, first_value

_AMOUNT_FIELDS = frozenset({"amount", "tax_amount"})
_AMOUNT_LIMIT = 1e15  # numeric(20, 4) holds 16 digits before the point
REPLAY_HEADER_PREFIX = "q2c.replay.header."
_MAX_TEXT = 4000  # characters kept of an error message
# Numbers, UUIDs and long hex runs vary between occurrences of the same failure.
_VOLATILE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|\b[0-9a-fA-F]{12,}\b|\d+(?:[.,]\d+)*"
)


def fingerprint(process: str, stage: str, system: str, error_type: str, message: str) -> str:
    """Groups alike failures: the same place and error, whatever numbers and IDs it named."""
    normalized = _VOLATILE.sub("#", message)
    key = "\x1f".join((process, stage, system, error_type, normalized))
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]


def failure(
    process: str, stage: str, system: str, error_type: str | None, message: str | None
) -> tuple[str, str, str]:
    """A failure's error type and message as kept (defaults filled in, the message cut to
    _MAX_TEXT characters), and its fingerprint."""
    error_type = error_type or "error"
    message = (message or "")[:_MAX_TEXT]
    return error_type, message, fingerprint(process, stage, system, error_type, message)


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1", "yes"))


class Observer:
    """Adds the observation (and dead letter) a record implies to a batch."""

    def __init__(self, mapping: AttributeMap) -> None:
        self.mapping = mapping
        # The attributes an observation can read: keys the map names, replay headers.
        self.read_keys = mapping.referenced_keys()
        self.read_prefixes = (REPLAY_HEADER_PREFIX,)
        self.correlation_keys = mapping.keys["correlation_id"]
        self._stage_keys = mapping.keys["stage"]  # a record naming none is not observed
        self._read_key_set = frozenset(self.read_keys)
        # Hot path: each field's keys looked up once here, not per record.
        keys = mapping.keys
        self._process_keys, self._system_keys = keys["process"], keys["system"]
        self._status_keys, self._dead_letter_keys = keys["status"], keys["dead_letter"]
        self._error_type_keys, self._error_message_keys = keys["error_type"], keys["error_message"]
        self._business_keys = tuple(
            (field, keys[field], field in _AMOUNT_FIELDS) for field in BUSINESS_FIELDS
        )
        # What collectors._wire needs to observe a stage span in C, in the order of its SPEC_*
        # positions; a record with any of `python_keys` (a status or dead-letter attribute)
        # takes the Python path.
        python_keys = tuple(dict.fromkeys(keys["status"] + keys["dead_letter"]))
        self.compiled = (
            self._process_keys, self._stage_keys, self._system_keys, python_keys,
            self._business_keys, jsonb, self._error_type_keys, self._error_message_keys,
            failure,
        )  # fmt: skip

    def readable(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """The part of `attrs` an observation can read."""
        keys, prefixes = self._read_key_set, self.read_prefixes
        return {key: value for key, value in attrs.items()
                if key in keys or key.startswith(prefixes)}  # fmt: skip

    def correlation_id(self, attrs: Mapping[str, Any], trace_id: bytes | None) -> str | None:
        """The configured correlation attribute, else the trace ID in hex, else None."""
        value = first_value(self.correlation_keys, attrs)
        if value is not None and str(value):
            return clean_text(str(value))[:256]
        return trace_id.hex() if trace_id else None

    def observe(
        self,
        batch: Batch,
        *,
        record_key: bytes,
        attrs: Mapping[str, Any],
        correlation_id: str,
        service_name: str,
        at_ns: int,
        failed: bool,
        error_type: str | None,
        message: str | None,
        trace_id: bytes | None,
        span_id: bytes | None,
        payload: Any = None,
    ) -> None:
        """Record the stage observation if the record names a process and stage."""
        process, stage = (
            first_value(self._process_keys, attrs),
            first_value(self._stage_keys, attrs),
        )
        if process is None or stage is None:
            return
        process, stage = clean_text(str(process)), clean_text(str(stage))
        system = clean_text(str(first_value(self._system_keys, attrs) or service_name))
        status = first_value(self._status_keys, attrs)
        dead = _truthy(first_value(self._dead_letter_keys, attrs))
        if isinstance(status, str) and status.lower() in ("ok", "error"):
            failed = status.lower() == "error"
        failed = failed or dead
        error_type = error_type or _as_text(first_value(self._error_type_keys, attrs))
        message = _as_text(first_value(self._error_message_keys, attrs)) or message
        fp = None
        if failed:
            error_type, message, fp = failure(process, stage, system, error_type, message)
        batch.observations.append(
            (
                record_key, correlation_id, process, stage, system, at_ns, not failed,
                jsonb(self._business(attrs)), error_type, message, fp, dead, trace_id, span_id,
            )
        )  # fmt: skip
        if dead:
            self._dead_letter(
                batch,
                record_key,
                attrs,
                correlation_id,
                process,
                stage,
                system,
                at_ns,
                error_type,
                message,
                fp,
                payload,
            )

    def _business(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """The business keys and amounts `attrs` report, by canonical field."""
        found: dict[str, Any] = {}
        for field, keys, is_amount in self._business_keys:
            value = first_value(keys, attrs)
            if value is None:
                continue
            if is_amount:
                try:
                    amount = float(value)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    continue  # not a number: kept in the raw attributes, not in the books
                if abs(amount) < _AMOUNT_LIMIT:
                    found[field] = amount
            else:
                found[field] = clean_text(str(value))
        return found

    def _dead_letter(
        self,
        batch: Batch,
        record_key: bytes,
        attrs: Mapping[str, Any],
        correlation_id: str,
        process: str,
        stage: str,
        system: str,
        at_ns: int,
        error_type: str | None,
        message: str | None,
        fp: str | None,
        payload: Any,
    ) -> None:
        headers = {
            key[len(REPLAY_HEADER_PREFIX) :]: clean_text(str(value))
            for key, value in attrs.items()
            if key.startswith(REPLAY_HEADER_PREFIX)
        }
        body = self.mapping.lookup("payload", attrs)
        if body is None:
            body = payload
        if body is not None and not isinstance(body, str):
            body = to_json(body).decode()
        content_type = next(
            (value for key, value in headers.items() if key.lower() == "content-type"), None
        )
        method = str(self.mapping.lookup("replay_method", attrs) or "POST").upper()
        target = _as_text(self.mapping.lookup("replay_target", attrs))
        batch.dead_letters.append(
            (
                record_key, correlation_id, process, stage, system, at_ns, target, method,
                jsonb(headers), content_type, clean_text(body) if body else None,
                error_type, message, fp,
            )
        )  # fmt: skip


def _as_text(value: object) -> str | None:
    return None if value is None else clean_text(str(value))

"""From one span or log record to the business facts it carries: a stage observation
(correlation ID, process, stage, system, time, success or failure, business keys) and,
for a dead-lettered message, the message itself."""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from collectors._pgtypes import jsonb
from collectors._values import as_text, clean_text, to_json
from collectors.batch import Batch, DeadLetterRow, ObservationRow
from collectors.mapping import BUSINESS_FIELDS, AttributeMap, first_value
from q2c.masking import configured
from q2c.vocabulary import AMOUNT_LIMIT
from replay.targets import method_problem, target_problem

log = logging.getLogger(__name__)

_AMOUNT_FIELDS = frozenset({"amount", "tax_amount"})
REPLAY_HEADER_PREFIX = "q2c.replay.header."
_MAX_TEXT = 4000  # characters kept of an error message
# Longest process, stage or system name and business key: they are keys of indexes, which
# refuse entries past 2,704 bytes, and up to three of them (with a correlation ID of up to
# 1,024 bytes) make one entry. A record naming a longer one is rejected.
MAX_KEY_CHARS = 255
MAX_KEY_BYTES = 640  # of UTF-8
_SURELY_SHORT = MAX_KEY_BYTES // 4  # characters: within both limits, however encoded
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
    """A failure's error type and message as kept (defaults filled in, secrets in the
    message masked, the message cut to _MAX_TEXT characters), and its fingerprint. Messages
    are masked as they are stored, not only when shown, so that searching them cannot probe
    for a secret a system echoed into one."""
    error_type = error_type or "error"
    # Cut before masking too: masking reads all it is given, and a sender may send megabytes.
    message = (configured().text((message or "")[: 2 * _MAX_TEXT]) or "")[:_MAX_TEXT]
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
        # Each stage key as written as the key of a JSON object ("key":).
        self._stage_markers = tuple(to_json(key) + b":" for key in self._stage_keys)
        self._read_key_set = frozenset(self.read_keys)
        # Hot path: each field's keys looked up once here, not per record.
        keys = mapping.keys
        self._process_keys, self._system_keys = keys["process"], keys["system"]
        self._business_keys = tuple(
            (field, keys[field], field in _AMOUNT_FIELDS) for field in BUSINESS_FIELDS
        )

    def readable(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """The part of `attrs` an observation can read."""
        keys, prefixes = self._read_key_set, self.read_prefixes
        return {
            key: value for key, value in attrs.items() if key in keys or key.startswith(prefixes)
        }

    def correlation_id(self, attrs: Mapping[str, Any], trace_id: bytes | None) -> str | None:
        """The configured correlation attribute, else the trace ID in hex, else None."""
        value = first_value(self.correlation_keys, attrs)
        if value is not None and str(value):
            return clean_text(str(value))[:256]
        return trace_id.hex() if trace_id else None

    def surely_unobserved(self, resource: Mapping[str, Any], attributes_json: bytes) -> bool:
        """Whether a record with these attributes (JSON, as orjson and the compiled reader
        write it), over its resource's readable attributes, surely names no stage: told
        without parsing, as no stage key appears as a key of the object. False when it may
        name one (then `observe` decides)."""
        if resource and first_value(self._stage_keys, resource) is not None:
            return False
        # A loop, not all(): a generator costs more than the test on this hot path.
        for marker in self._stage_markers:  # noqa: SIM110
            if marker in attributes_json:
                return False
        return True

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
    ) -> str | None:
        """Record the stage observation if the record names a process and stage. Returns
        why the record is rejected (a name or key over MAX_KEY_CHARS), having added
        nothing, or None."""
        if first_value(self._stage_keys, attrs) is None:  # most records: no stage, no pass
            return None
        values = self.mapping.canonical(attrs)
        process, stage = values.get("process"), values.get("stage")
        if process is None or stage is None:
            return None
        process, stage = clean_text(str(process)), clean_text(str(stage))
        system = clean_text(str(values.get("system") or service_name))
        if max(len(process), len(stage), len(system)) > _SURELY_SHORT:
            for name, keys, value in (
                ("process", self._process_keys, process),
                ("stage", self._stage_keys, stage),
                ("system", self._system_keys, system),
            ):
                if _too_long_key(value):
                    return _too_long(name, keys, attrs, value)
        business = self._business(values, attrs, batch)
        if isinstance(business, str):
            return business
        status = values.get("status")
        dead = _truthy(values.get("dead_letter"))
        if isinstance(status, str) and status.lower() in ("ok", "error"):
            failed = status.lower() == "error"
        failed = failed or dead
        error_type = as_text(error_type) or as_text(values.get("error_type"))
        message = as_text(values.get("error_message")) or as_text(message)
        fp = None
        if failed:
            error_type, message, fp = failure(process, stage, system, error_type, message)
        batch.observations.append(
            ObservationRow(
                record_key,
                correlation_id,
                process,
                stage,
                system,
                at_ns,
                not failed,
                jsonb(business),
                error_type,
                message,
                fp,
                dead,
                trace_id,
                span_id,
            )
        )
        if dead:
            self._dead_letter(
                batch,
                record_key,
                values,
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
        return None

    def _business(
        self, values: dict[str, Any], attrs: Mapping[str, Any], batch: Batch
    ) -> dict[str, Any] | str:
        """The business keys and amounts among a record's canonical `values`; or why the
        record (its attributes `attrs`) is rejected (a key over MAX_KEY_CHARS). An amount
        the books cannot hold is left out, and the client told (`Batch.warn`)."""
        found: dict[str, Any] = {}
        notes: list[str] = []  # told only of a record that is stored
        for field, keys, is_amount in self._business_keys:
            value = values.get(field)
            if value is None:
                continue
            if is_amount:
                try:
                    amount = float(value)
                except (TypeError, ValueError):
                    amount = math.nan
                if abs(amount) < AMOUNT_LIMIT:
                    found[field] = amount
                else:  # not a number, or too large: kept in the attributes, not in the books
                    notes.append(
                        f"{field} {str(value)[:40]!r} is not an amount the books hold (a "
                        f"number below {AMOUNT_LIMIT:.0e}): kept in the record's attributes "
                        "only"
                    )
            else:
                text = clean_text(str(value))
                if len(text) > _SURELY_SHORT and _too_long_key(text):
                    return _too_long(field, keys, attrs, text)
                found[field] = text
        for note in notes:
            batch.warn(note)
        return found

    def _dead_letter(
        self,
        batch: Batch,
        record_key: bytes,
        values: dict[str, Any],
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
        body = values.get("payload")
        if body is None:
            body = payload
        if body is not None and not isinstance(body, str):
            body = to_json(body).decode()
        content_type = next(
            (value for key, value in headers.items() if key.lower() == "content-type"), None
        )
        method = clean_text(str(values.get("replay_method") or "POST")).upper()
        target = values.get("replay_target")
        target_error = None if target is None else target_problem(target)
        target_url = target if isinstance(target, str) and target_error is None else None
        target_error = target_error or method_problem(method)
        if target_error is not None:  # the message is kept; its replay is refused, saying why
            log.warning("dead letter of %s: %s", correlation_id, target_error)
            method = method[:16]
        batch.dead_letters.append(
            DeadLetterRow(
                record_key,
                correlation_id,
                process,
                stage,
                system,
                at_ns,
                target_url,
                method,
                jsonb(headers),
                content_type,
                clean_text(body) if body else None,
                error_type,
                message,
                fp,
                target_error,
            )
        )


def _too_long_key(value: str) -> bool:
    return len(value) > _SURELY_SHORT and (
        len(value) > MAX_KEY_CHARS or len(value.encode()) > MAX_KEY_BYTES
    )


def _too_long(field: str, keys: tuple[str, ...], attrs: Mapping[str, Any], value: str) -> str:
    """The rejection of a record whose `field` (read from one of `keys`) is too long."""
    key = next((key for key in keys if attrs.get(key) is not None), "service.name")
    size = len(value.encode())
    return (
        f"{field} ({key}) is {len(value)} characters ({size} bytes) long; the limit is "
        f"{MAX_KEY_CHARS} characters and {MAX_KEY_BYTES} bytes"
    )

"""Turning OTLP attribute values into plain JSON-ready Python values."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any

import orjson


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as str, int, float, bool, list, dict or None, as stored: texts
    without NUL characters, which PostgreSQL cannot hold (so every rule sees the value
    the compiled reader gives too)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return clean_text(value.string_value)
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":  # a non-finite number is no value, as jsonb stores it
        return value.double_value if math.isfinite(value.double_value) else None
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    """OTLP KeyValue pairs as a dict (a repeated key keeps its last value), keys and texts
    without NUL characters."""
    converted = {}
    for pair in pairs:
        value, key = pair.value, pair.key
        if "\x00" in key:
            key = key.replace("\x00", "")
        # Most attributes are strings: skip the generic dispatch for them (hot path).
        if value.WhichOneof("value") == "string_value":
            text = value.string_value
            converted[key] = text.replace("\x00", "") if "\x00" in text else text
        else:
            converted[key] = any_value(value)
    return converted


def to_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON for a jsonb column; PostgreSQL refuses NUL characters, so they are
    dropped. With `sort_keys`, the canonical form of the document (to hash it)."""
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    data = orjson.dumps(value, option=option)
    if b"\\u0000" in data:
        data = orjson.dumps(_without_nul(value), option=option)
    return data


def clean_text(text: str) -> str:
    """`text` without NUL characters, which PostgreSQL text cannot hold."""
    return text.replace("\x00", "") if "\x00" in text else text


def as_text(value: object) -> str | None:
    """`value` as text for a text column (None stays None)."""
    return None if value is None else clean_text(str(value))


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {k.replace("\x00", ""): _without_nul(v) for k, v in value.items()}
    return value

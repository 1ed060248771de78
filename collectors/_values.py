"""Turning OTLP attribute values into plain JSON-ready Python values."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import orjson


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as str, int, float, bool, list, dict or None."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
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
    """OTLP KeyValue pairs as a dict (a repeated key keeps its last value)."""
    converted = {}
    for pair in pairs:
        value = pair.value
        # Most attributes are strings: skip the generic dispatch for them (hot path).
        converted[pair.key] = (
            value.string_value if value.WhichOneof("value") == "string_value" else any_value(value)
        )
    return converted


def to_json(value: Any) -> bytes:
    """Compact JSON for a jsonb column; PostgreSQL refuses NUL characters, so they are dropped."""
    data = orjson.dumps(value)
    if b"\\u0000" in data:
        data = orjson.dumps(_without_nul(value))
    return data


def clean_text(text: str) -> str:
    """`text` without NUL characters, which PostgreSQL text cannot hold."""
    return text.replace("\x00", "") if "\x00" in text else text


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {k.replace("\x00", ""): _without_nul(v) for k, v in value.items()}
    return value

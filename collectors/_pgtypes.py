"""Binary COPY with psycopg's C dumpers only.

Rows carry values already in PostgreSQL's binary form where Python dumpers would otherwise
run per value: a timestamptz is an int8 of microseconds since 2000-01-01 (`pg_time`) and a
jsonb is a version byte followed by JSON text (`jsonb`). COPY then declares those columns
int8 and bytea, whose dumpers are written in C; the server reads the bytes as the column's
own binary format.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.string import BytesBinaryDumper

from collectors._values import to_json

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_JSONB_VERSION = b"\x01"
_WIRE_TYPES = {"timestamptz": "int8", "jsonb": "bytea"}


def pg_time(unix_ns: int) -> int:
    """Unix nanoseconds as binary timestamptz: microseconds since 2000-01-01."""
    return unix_ns // 1000 - _PG_EPOCH_US


def jsonb(value: Any) -> bytes:
    """`value` as binary jsonb."""
    return _JSONB_VERSION + to_json(value)


def wire_types(types: list[str]) -> list[str]:
    """The types to declare to COPY for columns of `types` holding pre-encoded values."""
    return [_WIRE_TYPES.get(type_, type_) for type_ in types]


def use_c_dumpers(conn: psycopg.Connection) -> None:
    """On `conn`, bytea columns use psycopg's C dumper (by OID it finds a Python one)."""
    conn.adapters.register_dumper(bytes, BytesBinaryDumper)

"""Binary COPY without per-value Python work.

Rows carry values already in PostgreSQL's binary form where a dumper would otherwise
convert them: a timestamptz is an int8 of microseconds since 2000-01-01 (`pg_time`) and a
jsonb is a version byte followed by JSON text (`jsonb`); the server reads them as the
column's own binary form. `CopyRows` then encodes whole rows in C (collectors/_wire.c),
or, without it, has psycopg's C dumpers for int8 and bytea encode them while sending.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.string import BytesBinaryDumper

from collectors import _compiled
from collectors._values import to_json

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # where binary timestamptz counts from
_PG_EPOCH_US = int(_PG_EPOCH.timestamp()) * 1_000_000
JSONB_VERSION = b"\x01"  # the first byte of jsonb in binary COPY
_WIRE_TYPES = {"timestamptz": "int8", "jsonb": "bytea"}
_KINDS = {"text": "t", "bytea": "b", "int2": "h", "int8": "q", "bool": "?"}  # of copy_rows
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # no flags, no header extension
_TRAILER = b"\xff\xff"


def pg_time(unix_ns: int) -> int:
    """Unix nanoseconds as binary timestamptz: microseconds since 2000-01-01."""
    return unix_ns // 1000 - _PG_EPOCH_US


def pg_datetime(pg_us: int) -> datetime:
    """The moment a binary timestamptz (`pg_time`'s result) stands for."""
    return _PG_EPOCH + timedelta(microseconds=pg_us)


def jsonb(value: Any) -> bytes:
    """`value` as binary jsonb."""
    return JSONB_VERSION + to_json(value)


class CopyRows:
    """Rows for a binary COPY into columns of `types`, encoded once, when created: before
    a transaction opens, so that the server never waits for them inside one. `encoded`
    holds rows whose last columns the compiled reader encoded already (their first
    `len(row) - 1` values, then bytes of COPY fields); only it makes them."""

    def __init__(
        self, types: Sequence[str], rows: Sequence[tuple], encoded: Sequence[tuple] = ()
    ) -> None:
        self.rows = rows
        self.types = [_WIRE_TYPES.get(type_, type_) for type_ in types]
        self.data: bytes | None = None
        wire = _compiled.wire
        if wire is not None and (rows or encoded):
            kinds = "".join(_KINDS[type_] for type_ in self.types)
            columns = len(kinds)
            chunks = [_SIGNATURE, wire.copy_rows(list(rows), kinds, columns)]
            if encoded:
                tail = kinds[: len(encoded[0]) - 1] + "*"
                chunks.append(wire.copy_rows(list(encoded), tail, columns))
            self.data = b"".join((*chunks, _TRAILER))

    def __bool__(self) -> bool:
        return self.data is not None or bool(self.rows)

    def send(self, copy: psycopg.Copy) -> None:
        """Write the rows to an open COPY … FROM STDIN (FORMAT BINARY)."""
        if self.data is not None:
            copy.write(self.data)
            return
        copy.set_types(self.types)
        for row in self.rows:
            copy.write_row(row)


def use_c_dumpers(conn: psycopg.Connection) -> None:
    """On `conn`, bytea columns use psycopg's C dumper (by OID it finds a Python one)."""
    conn.adapters.register_dumper(bytes, BytesBinaryDumper)

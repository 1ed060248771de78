"""Binary COPY of Unix-nanosecond integers straight into timestamptz columns."""

from __future__ import annotations

import struct

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_INT8 = struct.Struct(">q")


class _UnixNanos(int):
    """Marker type: only used to register the dumper below by type as well as by OID."""


class NanosTimestamptzDumper(Dumper):
    """Dumps an int of Unix nanoseconds as binary timestamptz (microseconds since 2000)."""

    format = Format.BINARY

    def dump(self, obj: int) -> bytes:
        return _INT8.pack(obj // 1000 - _PG_EPOCH_US)


def use_nanosecond_timestamps(conn: psycopg.Connection) -> None:
    """On `conn`, COPY columns typed timestamptz take Unix-nanosecond ints."""
    oid = conn.adapters.types["timestamptz"].oid
    dumper = type("NanosTimestamptz", (NanosTimestamptzDumper,), {"oid": oid})
    conn.adapters.register_dumper(_UnixNanos, dumper)

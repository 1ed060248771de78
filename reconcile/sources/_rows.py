"""What every source does to put its records in the staging table: the COPY statement, and
each value as text, losslessly (a decimal as written, a timestamp in ISO 8601 with its
offset), NULL for a missing one."""

from __future__ import annotations

import json
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from psycopg import sql

from reconcile.sources import StagingTable


def as_text(value: Any) -> str | None:
    """`value` as text for COPY, or None (NULL). Raises ValueError for text PostgreSQL
    cannot hold (a NUL character)."""
    if value is None:
        return None
    if isinstance(value, bool):  # before int: True is an int to Python
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | Decimal):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)  # the shortest spelling that reads back as the same float
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    elif isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).hex()
    elif isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    else:
        text = str(value)
    if "\x00" in text:
        raise ValueError("holds a NUL character, which PostgreSQL text cannot")
    return text


def copy_statement(table: StagingTable) -> sql.Composed:
    """COPY into the staging table: its canonical columns, then `_at`."""
    columns = (*table.columns, "_at")
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )

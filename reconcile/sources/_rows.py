"""What every source does to put its records in the staging table: the COPY statement, and
each value as text, losslessly (a decimal as written, a timestamp in ISO 8601 with its
offset), NULL for a missing one."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from psycopg import sql

from reconcile.sources import StagingTable


def _json(value: dict[str, Any] | list[Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _hex(value: bytes | bytearray | memoryview) -> str:
    return bytes(value).hex()


# By exact type, the common ones first looked up rather than tested in turn: a million rows
# of seven values spend most of their load time here.
_RENDER: dict[type, Callable[[Any], str]] = {
    str: str,
    int: str,
    Decimal: str,
    float: repr,  # the shortest spelling that reads back as the same float
    bool: lambda value: "true" if value else "false",
    datetime: datetime.isoformat,
    date: date.isoformat,
    time: time.isoformat,
    bytes: _hex,
    bytearray: _hex,
    memoryview: _hex,
    dict: _json,
    list: _json,
}


def as_text(value: Any) -> str | None:
    """`value` as text for COPY, or None (NULL). Raises ValueError for text PostgreSQL
    cannot hold (a NUL character)."""
    if value is None:
        return None
    render = _RENDER.get(type(value))
    if render is None:  # a subclass (a driver's own str or Decimal), a UUID
        render = next((how for kind, how in _RENDER.items() if isinstance(value, kind)), str)
    text = render(value)
    if "\x00" in text:
        raise ValueError("holds a NUL character, which PostgreSQL text cannot")
    return text


def copy_statement(table: StagingTable) -> sql.Composed:
    """COPY into the staging table: its canonical columns, then `_at`."""
    columns = (*table.columns, "_at")
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )

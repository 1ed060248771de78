"""Rows reach PostgreSQL intact through binary COPY, with the compiled encoder and with
psycopg's (Q2C_DECODER=python)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import ModuleType

import psycopg
import pytest

from collectors import _pgtypes

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_TYPES = ["text", "bytea", "int2", "int8", "bool", "timestamptz", "jsonb"]
_ROWS = [
    ("plain", b"\x00\x01\xff", 7, 2**63 - 1, True, 0, {"a": [1, 2.5, None]}),
    ("Überweisung 請求書 🧾", b"", -32768, -(2**63), False, -1, {}),
    ("", None, 32767, 0, None, 1_700_000_000_000_000, "text"),
    (None, b"x" * 70_000, None, None, True, None, None),
]


def _encoded(row: tuple) -> tuple:
    *head, time_us, document = row
    return (*head, time_us, None if document is None else _pgtypes.jsonb(document))


def _expected(row: tuple) -> tuple:
    *head, time_us, document = row
    when = None if time_us is None else _PG_EPOCH + timedelta(microseconds=time_us)
    return (*head, when, document)


@pytest.mark.parametrize("decoder", ["compiled", "python"], indirect=True)
def test_rows_round_trip(owner_db: psycopg.Connection, decoder: str) -> None:
    db = owner_db  # it creates a table of its own
    columns = ", ".join(f"c{i} {type_}" for i, type_ in enumerate(_TYPES))
    db.execute(f"CREATE TABLE copied (n serial, {columns})")
    _pgtypes.use_c_dumpers(db)
    names = ", ".join(f"c{i}" for i in range(len(_TYPES)))
    with db.cursor() as cur, cur.copy(f"COPY copied ({names}) FROM STDIN (FORMAT BINARY)") as cp:
        _pgtypes.CopyRows(_TYPES, [_encoded(row) for row in _ROWS]).send(cp)

    stored = db.execute(f"SELECT {names} FROM copied ORDER BY n").fetchall()
    assert stored == [_expected(row) for row in _ROWS]


@pytest.mark.parametrize(
    ("rows", "kinds", "columns", "error"),
    [
        ([("x",)], "q", 1, TypeError),  # text where an int8 belongs
        ([(True,)], "q", 1, TypeError),  # bool is not an integer column's value
        ([(40_000,)], "h", 1, OverflowError),
        ([(2**64,)], "q", 1, OverflowError),
        ([("a", "b")], "t", 1, ValueError),  # a row longer than its kinds
        ([["a"]], "t", 1, ValueError),  # not a tuple
        ([("a",)], "z", 1, ValueError),  # unknown kind
        ([("a",)], "t", 2, ValueError),  # fewer kinds than columns, and no encoded tail
        ([("a", b"")], "t*", 0, ValueError),  # more values than columns
        ([("a", "b")], "t*", 2, TypeError),  # an encoded tail is bytes
    ],
)
def test_bad_rows_raise_instead_of_writing_garbage(
    rows: list, kinds: str, columns: int, error: type, compiled_wire: ModuleType
) -> None:
    with pytest.raises(error):
        compiled_wire.copy_rows(rows, kinds, columns)

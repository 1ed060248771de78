"""Rows reach PostgreSQL intact through binary COPY, with the compiled encoder and without."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from collectors import _pgtypes
from collectors._compiled import wire

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


@pytest.fixture(params=["compiled", "psycopg"])
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "compiled" and wire is None:
        pytest.skip("collectors._wire was not compiled")
    if request.param == "psycopg":
        monkeypatch.setattr(_pgtypes, "wire", None)
    return request.param


def test_rows_round_trip(db: psycopg.Connection, encoder: str) -> None:
    columns = ", ".join(f"c{i} {type_}" for i, type_ in enumerate(_TYPES))
    db.execute(f"CREATE TABLE copied (n serial, {columns})")
    _pgtypes.use_c_dumpers(db)
    names = ", ".join(f"c{i}" for i in range(len(_TYPES)))
    with db.cursor() as cur, cur.copy(f"COPY copied ({names}) FROM STDIN (FORMAT BINARY)") as cp:
        _pgtypes.CopyRows([_encoded(row) for row in _ROWS], _TYPES).send(cp)

    stored = db.execute(f"SELECT {names} FROM copied ORDER BY n").fetchall()
    assert stored == [_expected(row) for row in _ROWS]


@pytest.mark.skipif(wire is None, reason="collectors._wire was not compiled")
@pytest.mark.parametrize(
    ("rows", "kinds", "error"),
    [
        ([("x",)], "q", TypeError),  # text where an int8 belongs
        ([(True,)], "q", TypeError),  # bool is not an integer column's value
        ([(40_000,)], "h", OverflowError),
        ([(2**64,)], "q", OverflowError),
        ([("a", "b")], "t", ValueError),  # a row longer than its kinds
        ([["a"]], "t", ValueError),  # not a tuple
        ([("a",)], "z", ValueError),  # unknown kind
    ],
)
def test_bad_rows_raise_instead_of_writing_garbage(rows: list, kinds: str, error: type) -> None:
    assert wire is not None
    with pytest.raises(error):
        wire.copy_rows(rows, kinds)

"""Search terms match as typed: %, _ and backslashes are characters, not wildcards."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine

from queries.exceptions import ExceptionFilter, list_exceptions


@pytest.fixture
def messages(db: psycopg.Connection) -> None:
    for n, message in enumerate(("rate 5% over limit", "tax_code missing", "path C:\\erp", "ok")):
        db.execute(
            "INSERT INTO exceptions (correlation_id, stage, fingerprint, message, first_seen, "
            "last_seen) VALUES (%s, 'invoice_recorded', %s, %s, now(), now())",
            (f"INV-{n}", f"fp{n}", message),
        )


@pytest.mark.parametrize(
    ("term", "found"),
    [
        ("%", ["rate 5% over limit"]),
        ("_", ["tax_code missing"]),
        ("\\", ["path C:\\erp"]),
        ("x_c", ["tax_code missing"]),
        ("TAX", ["tax_code missing"]),
    ],
)
def test_search_wildcards_are_literal(engine: Engine, messages, term: str, found: list) -> None:
    rows = list_exceptions(engine, ExceptionFilter(search=term))

    assert [row["message"] for row in rows] == found

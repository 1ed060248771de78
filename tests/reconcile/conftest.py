"""A staging table as the engine makes one: a temporary table of `text` columns, one per
canonical field, and `_at`, in a transaction of a throwaway database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from reconcile.sources import StagingTable

COLUMNS = ("invoice_id", "customer_id", "amount", "tax_amount", "currency", "status", "updated_at")


@pytest.fixture
def staging(empty_db: str) -> Iterator[StagingTable]:
    """`staging_invoices` with the invoices' canonical fields, in an open transaction."""
    with psycopg.connect(empty_db) as conn, conn.cursor() as cursor:
        columns = sql.SQL(", ").join(
            sql.SQL("{} text").format(sql.Identifier(name)) for name in (*COLUMNS, "_at")
        )
        cursor.execute(sql.SQL("CREATE TEMP TABLE staging_invoices ({})").format(columns))
        yield StagingTable(cursor, "staging_invoices", COLUMNS)


@pytest.fixture
def staged(staging: StagingTable) -> Callable[[], list[dict[str, str | None]]]:
    """The staging table's rows, in the order they were copied."""

    def rows() -> list[dict[str, str | None]]:
        cursor = staging.cursor
        cursor.execute(
            sql.SQL("SELECT * FROM {} ORDER BY ctid").format(sql.Identifier(staging.name))
        )
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    return rows

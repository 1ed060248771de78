"""The sql source against a second PostgreSQL database (a warehouse) and, as an ERP replica
of another make, the MariaDB server at 127.0.0.1:3306: the query's columns as canonical
fields or mapped, values as lossless text, streaming, read-only, errors with the reason
and the rows so far, the password never shown."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pymysql
import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from reconcile.sources import LoadResult, SourceError, StagingTable
from reconcile.sources.sql import BATCH_ROWS, SqlSource

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "database": "test"}
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
INVOICES = [("INV-1", "1234.50", "EUR"), ("INV-2", "99.99", "USD"), ("INV-3", "0.10", "EUR")]

Staged = Callable[[], list[dict[str, Any]]]


def sql_source(query: str, **changes: Any) -> SqlSource:
    return SqlSource.model_validate(
        {"type": "sql", "url_env": "Q2C_WAREHOUSE_URL", "query": query, **changes}
    )


def load(url: str, query: str, staging: StagingTable, **changes: Any) -> LoadResult:
    return sql_source(query, **changes).load(staging, {"Q2C_WAREHOUSE_URL": url})


def failure(url: str, query: str, staging: StagingTable, **changes: Any) -> SourceError:
    with pytest.raises(SourceError) as raised:
        load(url, query, staging, **changes)
    return raised.value


@pytest.fixture
def warehouse(pg_server: str, create_database: Callable[..., str]) -> str:
    """The URL of a second PostgreSQL database holding `crm_invoices` and a sequence."""
    url = make_url(pg_server).set(database=create_database())
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE crm_invoices (invoice_no text, total numeric(12, 2), currency text,"
            " updated timestamptz DEFAULT '2026-12-01 10:00:00+00')"
        )
        conn.cursor().executemany(
            "INSERT INTO crm_invoices (invoice_no, total, currency) VALUES (%s, %s, %s)",
            INVOICES,
        )
        conn.execute("CREATE SEQUENCE invoice_numbers")
    return url.render_as_string(hide_password=False)


@pytest.fixture
def erp_replica() -> Iterator[tuple[str, pymysql.connections.Connection]]:
    """A table of invoices of its own in MariaDB's `test` database, dropped afterwards."""
    try:
        conn = pymysql.connect(**MARIADB, autocommit=True)
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB is not reachable at 127.0.0.1:3306 ({exc}); these tests need it")
    table = f"q2c_invoices_{os.getpid()}_{secrets.token_hex(4)}"
    with conn.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {table} (external_id varchar(20), amount decimal(12, 2),"
            " currency_code char(3), last_modified datetime DEFAULT '2026-12-01 10:00:00')"
        )
        cursor.executemany(
            f"INSERT INTO {table} (external_id, amount, currency_code) VALUES (%s, %s, %s)",
            INVOICES,
        )
    try:
        yield table, conn
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def test_the_query_columns_are_the_canonical_fields(
    warehouse: str, staging: StagingTable, staged: Staged
) -> None:
    query = (
        "SELECT invoice_no AS invoice_id, total AS amount, currency FROM crm_invoices"
        " WHERE invoice_no LIKE 'INV-%' ORDER BY invoice_no"  # a % the driver leaves alone
    )

    result = load(warehouse, query, staging)

    assert result == LoadResult(3, ("invoice_id", "amount", "currency"))
    assert [(r["invoice_id"], r["amount"], r["currency"], r["_at"]) for r in staged()] == [
        ("INV-1", "1234.50", "EUR", "row 1"),
        ("INV-2", "99.99", "USD", "row 2"),
        ("INV-3", "0.10", "EUR", "row 3"),
    ]


def test_fields_map_the_query_columns_onto_canonical_fields(
    warehouse: str, staging: StagingTable, staged: Staged
) -> None:
    fields = {"invoice_id": "invoice_no", "amount": "total", "updated_at": "updated"}

    result = load(warehouse, "SELECT * FROM crm_invoices", staging, fields=fields)

    assert result == LoadResult(3, ("invoice_id", "amount", "updated_at"))
    row = staged()[0]
    assert (row["invoice_id"], row["amount"], row["currency"]) == ("INV-1", "1234.50", None)
    assert datetime.fromisoformat(row["updated_at"]) == datetime(2026, 12, 1, 10, tzinfo=UTC)


def test_a_mapped_column_the_query_lacks_fails_naming_it(
    warehouse: str, staging: StagingTable
) -> None:
    error = failure(
        warehouse,
        "SELECT invoice_no, total FROM crm_invoices",
        staging,
        fields={"invoice_id": "invoice_no", "amount": "amount"},
    )

    assert (
        error.reason == "the query gives no column amount (for amount); it gives invoice_no, total"
    )


def test_values_reach_the_staging_table_as_lossless_text(
    warehouse: str, staging: StagingTable, staged: Staged
) -> None:
    query = (
        "SELECT 'INV-1' AS invoice_id, 10000000000000000.01::numeric AS amount,"
        " 0.1::float8 AS tax_amount, NULL AS customer_id, true AS status,"
        " DATE '2026-12-01' AS currency, TIMESTAMPTZ '2026-12-01 10:00:00+02' AS updated_at"
    )

    load(warehouse, query, staging)

    row = staged()[0]
    assert (row["amount"], row["tax_amount"], row["customer_id"]) == (
        "10000000000000000.01",
        "0.1",
        None,
    )
    assert (row["status"], row["currency"]) == ("true", "2026-12-01")
    assert datetime.fromisoformat(row["updated_at"]) == datetime(2026, 12, 1, 8, tzinfo=UTC)


def test_a_large_table_is_streamed_into_the_staging_table(
    warehouse: str, staging: StagingTable
) -> None:
    query = (
        "SELECT 'INV-' || n AS invoice_id, (n * 1.25)::numeric(12, 2) AS amount"
        " FROM generate_series(1, 120000) AS n"
    )

    result = load(warehouse, query, staging)

    staging.cursor.execute(
        "SELECT count(*), count(DISTINCT invoice_id), max(_at) FILTER (WHERE invoice_id = "
        "'INV-120000') FROM staging_invoices"
    )
    assert result.rows == 120000
    assert staging.cursor.fetchone() == (120000, 120000, "row 120000")


def test_a_query_error_fails_with_the_reason_and_the_rows_so_far(
    warehouse: str, staging: StagingTable
) -> None:
    # Row 12000 divides by zero; the batches before it were copied, since the rows are
    # fetched a batch at a time, not read whole before the first is copied.
    query = (
        "SELECT n::text AS invoice_id, 1 / (n - 12000) AS amount FROM generate_series(1, 20000) n"
    )

    error = failure(warehouse, query, staging)

    copied = (12000 - 1) // BATCH_ROWS * BATCH_ROWS
    assert error.reason.startswith("the query failed: division by zero")
    assert error.at == f"after {copied} rows"


def test_the_query_runs_read_only_on_postgresql(warehouse: str, staging: StagingTable) -> None:
    error = failure(warehouse, "SELECT nextval('invoice_numbers')::text AS invoice_id", staging)

    assert "read-only transaction" in error.reason
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("SELECT is_called FROM invoice_numbers").fetchone() == (False,)


def test_the_password_of_the_url_is_never_shown(
    warehouse: str, staging: StagingTable, app_role: tuple[str, str]
) -> None:
    name, password = app_role
    with_password = make_url(warehouse).set(username=name, password=password)
    url = with_password.render_as_string(hide_password=False)
    unreachable = with_password.set(port=1).render_as_string(hide_password=False)

    said = sql_source("SELECT 1 AS invoice_id").probe({"Q2C_WAREHOUSE_URL": url})
    refused = failure(unreachable, "SELECT 1", staging)
    denied = failure(url, "SELECT invoice_no AS invoice_id FROM crm_invoices", staging)

    assert said.startswith(f"connected to postgresql+psycopg://{name}:***@")  # TCP or socket
    assert refused.reason.startswith(f"could not connect to postgresql+psycopg://{name}:***@")
    assert "permission denied" in denied.reason
    assert all(password not in str(e) for e in (said, refused, denied))


def test_probe_names_the_database_and_the_query_columns(warehouse: str) -> None:
    source = sql_source("SELECT invoice_no AS invoice_id, total AS amount FROM crm_invoices;")

    said = source.probe({"Q2C_WAREHOUSE_URL": warehouse})

    where = make_url(warehouse).set(drivername="postgresql+psycopg")
    assert said == (
        f"connected to {where.render_as_string()} (read-only); the query gives invoice_id, amount"
    )


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({}, "$Q2C_WAREHOUSE_URL is not set (it holds the database's URL)"),
        ({"Q2C_WAREHOUSE_URL": "s3cr3t at db"}, "$Q2C_WAREHOUSE_URL is not a SQLAlchemy URL"),
        (
            {"Q2C_WAREHOUSE_URL": "mssql+pymssql://sa:s3cr3t@127.0.0.1/erp"},
            "no SQLAlchemy driver for mssql+pymssql is installed",
        ),
    ],
)
def test_a_url_that_cannot_be_used_fails_saying_why(
    staging: StagingTable, environ: dict[str, str], reason: str
) -> None:
    with pytest.raises(SourceError) as raised:
        sql_source("SELECT 1").load(staging, environ)

    assert raised.value.reason.startswith(reason)
    assert "s3cr3t" not in str(raised.value)


def test_a_bad_record_names_its_key() -> None:
    with pytest.raises(ValidationError) as raised:
        SqlSource.model_validate({"type": "sql", "url_env": "not a name", "query": "", "x": 1})

    assert sorted(error["loc"][0] for error in raised.value.errors()) == ["query", "url_env", "x"]


def test_an_erp_replica_on_mariadb_loads_streamed_and_mapped(
    erp_replica: tuple[str, Any], staging: StagingTable, staged: Staged
) -> None:
    table, conn = erp_replica
    with conn.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (external_id, amount, currency_code) VALUES (%s, %s, 'EUR')",
            [(f"BULK-{n}", f"{n}.25") for n in range(1, 20001)],
        )
    fields = {"invoice_id": "external_id", "amount": "amount", "updated_at": "last_modified"}
    query = f"SELECT * FROM {table} WHERE external_id LIKE 'INV-%' OR external_id LIKE 'BULK-%'"

    result = load(MARIADB_URL, query, staging, fields=fields)

    assert result == LoadResult(20003, ("invoice_id", "amount", "updated_at"))
    first = staged()[0]
    assert (first["invoice_id"], first["amount"], first["updated_at"]) == (
        "INV-1",
        "1234.50",
        "2026-12-01T10:00:00",  # a DATETIME has no zone, and none is made up
    )


def test_an_erp_replica_on_mariadb_is_read_only(
    erp_replica: tuple[str, Any], staging: StagingTable
) -> None:
    table, conn = erp_replica

    error = failure(MARIADB_URL, f"DELETE FROM {table}", staging)

    assert "READ ONLY transaction" in error.reason
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        assert cursor.fetchone() == (3,)


def test_an_erp_replica_query_error_names_the_reason(
    erp_replica: tuple[str, Any], staging: StagingTable
) -> None:
    table, _ = erp_replica

    error = failure(MARIADB_URL, f"SELECT external_id AS invoice_id, nope FROM {table}", staging)

    assert error.reason.startswith("the query failed: (1054, \"Unknown column 'nope'")
    assert error.at == "after 0 rows"


def test_probe_reaches_the_erp_replica(erp_replica: tuple[str, Any]) -> None:
    table, _ = erp_replica
    source = sql_source(f"SELECT external_id AS invoice_id, amount FROM {table}")

    said = source.probe({"Q2C_WAREHOUSE_URL": "mysql://root@127.0.0.1:3306/test"})

    assert said == (
        "connected to mysql+pymysql://root@127.0.0.1:3306/test (read-only);"
        " the query gives invoice_id, amount"
    )

"""The `sql` source: the rows of a query against another database (a warehouse, an ERP's
replica), through SQLAlchemy, streamed batch by batch into the staging table.

The query runs in a READ ONLY transaction where the database has one (PostgreSQL, MySQL,
MariaDB); elsewhere only the privileges of the URL's user keep it from writing. The URL is
read from the environment, since it holds a password, and its password never appears in a
message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from q2c.config_types import EnvName
from q2c.errors import first_line
from reconcile.sources import LoadResult, SourceError, StagingTable
from reconcile.sources._rows import as_text, copy_statement

BATCH_ROWS = 5000  # fetched from the database, then copied, at a time
CONNECT_TIMEOUT = 10  # in seconds

# A URL that names no driver gets the one Q2C ships (psycopg) or offers (`[mysql]`), not
# SQLAlchemy's default, which is not installed.
DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
TIMEOUT_ARGUMENTS = {"psycopg": "connect_timeout", "pymysql": "connect_timeout"}
# The statement that makes the connection's transaction read-only, before the query runs.
READ_ONLY = {
    "postgresql": "SET TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "mariadb": "SET SESSION TRANSACTION READ ONLY",
}


class SqlSource(BaseModel):
    """A query's rows: its column names are the canonical fields, or `fields` maps each
    canonical field to a column of the query."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["sql"]
    url_env: EnvName
    query: str = Field(min_length=1)
    fields: dict[str, str] | None = Field(default=None, min_length=1)

    def provides(self) -> tuple[str, ...] | None:
        """The keys of `fields`; without them, the query's columns, known once loaded."""
        return tuple(self.fields) if self.fields else None

    def load(self, copy_into: StagingTable, environ: Mapping[str, str]) -> LoadResult:
        """Copy every row of the query into `copy_into`; see reconcile.sources for the
        contract. A batch is fetched before its COPY begins, so that a failure of the
        source never interrupts a COPY."""
        url = self._url(environ)
        rows, statement = 0, copy_statement(copy_into)
        with _connected(url) as connection:
            try:
                result = connection.execution_options(
                    no_parameters=True, stream_results=True, yield_per=BATCH_ROWS
                ).exec_driver_sql(self.query)
                columns = tuple(result.keys())
                picks = self._picks(columns, copy_into.columns)
                # The size said again: without it, partitions() reads the whole result first.
                for batch in result.partitions(BATCH_ROWS):
                    staged = [_staged(row, picks, rows + n) for n, row in enumerate(batch, 1)]
                    with copy_into.cursor.copy(statement) as copy:
                        for row in staged:
                            copy.write_row(row)
                    rows += len(staged)
            except SQLAlchemyError as exc:
                raise SourceError(
                    _masked(f"the query failed: {first_line(exc)}", url), _after(rows)
                ) from None
        return LoadResult(rows, self.provides() or columns)

    def probe(self, environ: Mapping[str, str]) -> str:
        """Connects and asks for the query's columns without reading its rows:
        `connected to mysql+pymysql://root@127.0.0.1:3306/test (read-only); the query
        gives invoice_id, amount, currency`."""
        url = self._url(environ)
        with _connected(url) as connection:
            query = self.query.strip().rstrip(";")
            try:
                result = connection.execution_options(no_parameters=True).exec_driver_sql(
                    f"SELECT * FROM ({query}) AS q2c_probe WHERE 1 = 0"
                )
                columns = tuple(result.keys())
                result.close()
            except SQLAlchemyError as exc:
                raise SourceError(_masked(f"the query failed: {first_line(exc)}", url)) from None
            self._picks(columns, columns)
            mode = "read-only" if connection.dialect.name in READ_ONLY else "not read-only"
        where = url.render_as_string(hide_password=True)
        return f"connected to {where} ({mode}); the query gives {', '.join(columns)}"

    def _url(self, environ: Mapping[str, str]) -> URL:
        text = environ.get(self.url_env, "")
        if not text:
            raise SourceError(f"${self.url_env} is not set (it holds the database's URL)")
        try:
            url = make_url(text)
        except ArgumentError:
            # Not the parser's message: it quotes the URL, password and all.
            raise SourceError(
                f"${self.url_env} is not a SQLAlchemy URL "
                "(e.g. postgresql://user:password@host/db, mysql+pymysql://user@host/db)"
            ) from None
        return url.set(drivername=DEFAULT_DRIVERS.get(url.drivername, url.drivername))

    def _picks(self, columns: Sequence[str], staged: tuple[str, ...]) -> list[int | None]:
        """For each staging column, the index of the query's column that fills it."""
        twice = sorted({name for name in columns if list(columns).count(name) > 1})
        if twice:
            raise SourceError(f"the query gives more than one column named {', '.join(twice)}")
        given = {name: index for index, name in enumerate(columns)}
        if self.fields:
            absent = [
                f"{column} (for {field})"
                for field, column in self.fields.items()
                if column not in given
            ]
            if absent:
                raise SourceError(
                    f"the query gives no column {', '.join(absent)}; it gives {', '.join(columns)}"
                )
            return [given[self.fields[name]] if name in self.fields else None for name in staged]
        return [given.get(name) for name in staged]


@contextlib.contextmanager
def _connected(url: URL) -> Iterator[Connection]:
    """A connection to the source's database, its transaction read-only where the database
    allows; a failure to connect as SourceError, the engine disposed of afterwards."""
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args=_connect_args(url))
    except (NoSuchModuleError, ImportError):
        raise SourceError(
            f"no SQLAlchemy driver for {url.drivername} is installed "
            "(for MySQL and MariaDB: pip install 'q2c-console[mysql]')"
        ) from None
    try:
        try:
            connection = engine.connect()
        except SQLAlchemyError as exc:
            raise _unreachable(url, exc) from None
        with connection:
            statement = READ_ONLY.get(connection.dialect.name)
            try:
                if statement:
                    connection.exec_driver_sql(statement)
            except SQLAlchemyError as exc:
                raise _unreachable(url, exc) from None
            yield connection
    finally:
        engine.dispose()


def _unreachable(url: URL, exc: SQLAlchemyError) -> SourceError:
    where = url.render_as_string(hide_password=True)
    return SourceError(_masked(f"could not connect to {where}: {first_line(exc)}", url))


def _connect_args(url: URL) -> dict[str, int]:
    # Each driver names its own; other drivers keep their default.
    name = TIMEOUT_ARGUMENTS.get(url.get_driver_name())
    return {name: CONNECT_TIMEOUT} if name else {}


def _staged(row: Sequence[object], picks: list[int | None], number: int) -> list[str | None]:
    try:
        values = [None if index is None else as_text(row[index]) for index in picks]
    except ValueError as exc:
        raise SourceError(f"a value {exc}", f"row {number}") from None
    return [*values, f"row {number}"]


def _after(rows: int) -> str:
    return f"after {rows} row{'' if rows == 1 else 's'}"


def _masked(text: str, url: URL) -> str:
    """`text` without the URL's password, should a driver's message ever quote it."""
    return text.replace(url.password, "***") if url.password else text

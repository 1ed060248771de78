"""Storing batches in PostgreSQL: the telemetry writer and its contract.

Why it is shaped this way (where the time goes when inserting telemetry):
1. Round trips: one COPY per staging table per transaction, never a statement per row.
2. Parsing: binary COPY, with JSON pre-serialised by orjson, so PostgreSQL parses each
   jsonb value once and nothing else.
3. Idempotency: COPY cannot skip duplicates. Most batches hold none, so rows are first
   COPYed straight into their tables; only when that meets a unique violation (a
   redelivery) is the transaction rolled back and the batch written again through
   per-connection temporary tables (no WAL), merged with INSERT … ON CONFLICT DO NOTHING.
   (No savepoint: a subtransaction costs every row it writes, and redeliveries are rare.)
4. Derived rows: computed set-wise from the records that were new in this transaction, so a
   redelivered batch derives nothing and a transaction costs a handful of statements
   whatever its size, sent together in one pipeline (one round trip). Several requests
   share one transaction (group commit) to amortise the commit and the statements' fixed
   cost.
5. Resources repeat in almost every batch: each connection remembers the resources it has
   seen committed and sends only new ones.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import psycopg

from collectors import _sql
from collectors._pgtypes import use_c_dumpers, write_rows
from collectors.batch import Batch
from q2c.catalog import Process, stage_rows
from q2c.errors import first_line

log = logging.getLogger(__name__)

_RETRYABLE_CONFLICTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_CONFLICT_RETRIES = 3
_KNOWN_RESOURCES_LIMIT = 100_000  # resource hashes remembered per connection
_DERIVE = (
    _sql.UPSERT_STAGE_EVENTS,
    _sql.UPSERT_TRANSACTIONS,
    _sql.UPSERT_EXCEPTIONS,
    _sql.SYNC_EXCEPTION_CONTEXT,
    _sql.AUTO_RESOLVE,
)


class StorageUnavailable(Exception):
    """The database cannot be reached or is shutting down; the client should retry later."""


class StorageRejected(Exception):
    """The database refused the batch's data; retrying the same batch will not help."""


class TelemetryWriter(Protocol):
    """Stores batches.

    `write` is all-or-nothing and idempotent: it returns only after the batch is durably
    committed; when it raises, nothing of the batch is stored; writing a batch that is
    already stored (wholly or partly) changes no row and no count.
    """

    def write(self, batch: Batch) -> None: ...

    def close(self) -> None: ...


class PostgresWriter:
    """A TelemetryWriter on one PostgreSQL connection, opened lazily and reopened after loss."""

    def __init__(self, url: str, catalog: tuple[Process, ...], connect_timeout: int = 5) -> None:
        self.url = url
        self.catalog_rows = stage_rows(catalog)
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection | None = None
        self._known_days: set[int] = set()
        self._known_resources: set[bytes] = set()

    def write(self, batch: Batch) -> None:
        """Store `batch` in one transaction (see TelemetryWriter)."""
        if not batch.record_count:
            return
        for attempt in range(_CONFLICT_RETRIES):
            try:
                conn = self._connection()
                self._ensure_partitions(conn, batch.days)
                resources = [r for key, r in batch.resources.items()
                             if key not in self._known_resources]  # fmt: skip
                try:
                    with conn.transaction():
                        _store(conn, batch, resources, direct=True)
                except psycopg.errors.UniqueViolation:  # some records are stored already
                    with conn.transaction():
                        _store(conn, batch, resources, direct=False)
                self._remember_resources(batch)
                return
            except _RETRYABLE_CONFLICTS:
                if attempt == _CONFLICT_RETRIES - 1:
                    raise StorageUnavailable("concurrent writers kept conflicting") from None
                time.sleep(0.01 * (attempt + 1))
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._drop_connection()
                raise StorageUnavailable(first_line(exc)) from None
            except psycopg.DataError as exc:
                raise StorageRejected(first_line(exc)) from None
            except psycopg.Error as exc:
                self._drop_connection()
                raise StorageUnavailable(first_line(exc)) from None

    def close(self) -> None:
        """Close the connection; a later write reconnects."""
        self._drop_connection()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.url, connect_timeout=self.connect_timeout, autocommit=True)
            use_c_dumpers(conn)
            conn.execute(_sql.STAGING)
            with conn.cursor() as cur:
                cur.execute("DELETE FROM _catalog")
                cur.executemany("INSERT INTO _catalog VALUES (%s, %s, %s, %s)", self.catalog_rows)
            self._conn = conn
            self._known_days.clear()
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _remember_resources(self, batch: Batch) -> None:
        if len(self._known_resources) > _KNOWN_RESOURCES_LIMIT:
            self._known_resources.clear()
        self._known_resources.update(batch.resources)

    def _ensure_partitions(self, conn: psycopg.Connection, days: set[int]) -> None:
        """Create the day partitions rows will land in, outside the data transaction."""
        for day in sorted(days - self._known_days):
            for parent in ("spans", "log_records"):
                conn.execute(
                    "SELECT q2c_ensure_partition(%s::regclass, date '1970-01-01' + %s::integer)",
                    (parent, day),
                )
            self._known_days.add(day)


def _store(conn: psycopg.Connection, batch: Batch, resources: list[tuple], direct: bool) -> None:
    """Write `batch` in the open transaction: COPY straight into the tables when `direct`
    (a duplicate record then raises UniqueViolation), else staged and merged."""
    cur = conn.cursor()
    if resources:
        cur.execute("TRUNCATE _in_resources")
        _copy(cur, "_in_resources", resources)
        cur.execute(_sql.INSERT_RESOURCES)
    if direct:
        _copy(cur, "spans", batch.spans, direct=True)
        _copy(cur, "log_records", batch.logs, direct=True)
        _copy(cur, "_new_obs", batch.observations, direct=True)
        derive = bool(batch.observations)
    else:
        derive = _store_some_new(cur, batch)
    if batch.dead_letters:
        cur.execute("TRUNCATE _in_dead")
        _copy(cur, "_in_dead", batch.dead_letters)
    with conn.pipeline():  # COPY cannot run in a pipeline, statements can
        if derive:
            for statement in _DERIVE:
                cur.execute(statement)
        if batch.dead_letters:
            cur.execute(_sql.INSERT_DEAD_LETTERS)


def _store_some_new(cur: psycopg.Cursor, batch: Batch) -> bool:
    """Stage records and merge those not stored yet; True if any observation is new."""
    cur.execute("TRUNCATE _in_spans, _in_logs, _in_obs, _new_records")
    _copy(cur, "_in_spans", batch.spans)
    _copy(cur, "_in_logs", batch.logs)
    _copy(cur, "_in_obs", batch.observations)
    derive = bool(batch.observations)
    if batch.spans:
        cur.execute(_sql.INSERT_SPANS_NOTING_NEW if derive else _sql.INSERT_SPANS)
    if batch.logs:
        cur.execute(_sql.INSERT_LOGS_NOTING_NEW if derive else _sql.INSERT_LOGS)
    if not derive:
        return False
    cur.execute(_sql.SELECT_NEW_OBSERVATIONS)
    return cur.rowcount > 0


def _copy(cur: psycopg.Cursor, table: str, rows: list[tuple], direct: bool = False) -> None:
    if not rows:
        return
    names, types = (_sql.DIRECT_COLUMNS, _sql.DIRECT_TYPES) if direct else (
        _sql.STAGING_COLUMNS, _sql.STAGING_TYPES)  # fmt: skip
    columns = ", ".join(names[table])
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        write_rows(copy, rows, types[table])

"""Storing batches in PostgreSQL: the telemetry writer and its contract.

Why it is shaped this way (where the time goes when inserting telemetry):
1. Round trips: one COPY per staging table per transaction, never a statement per row.
2. Parsing and encoding: binary COPY of rows encoded in C before the transaction opens,
   with times and JSON already in PostgreSQL's binary forms (collectors._pgtypes), so
   PostgreSQL parses each jsonb value once and nothing else.
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
from dataclasses import dataclass
from typing import Protocol

import psycopg

from collectors import _sql
from collectors._pgtypes import CopyRows, use_c_dumpers
from collectors.batch import (
    DEAD_LETTERS,
    LOGS,
    OBSERVATIONS,
    RESOURCES,
    SPANS,
    STAGINGS,
    Batch,
)
from q2c.catalog import INSERT_CATALOG, Process, stage_rows
from q2c.errors import first_line

log = logging.getLogger(__name__)

_CONFLICT_RETRIES = 3
_COLUMNS = {staging.table: staging.columns for staging in STAGINGS}
_KNOWN_RESOURCES_LIMIT = 100_000  # resource hashes remembered per connection
_DERIVE = (
    _sql.UPSERT_STAGE_EVENTS,
    _sql.UPSERT_TRANSACTIONS,
    _sql.DERIVE_EXCEPTIONS,
    _sql.ENRICH_OCCURRENCES,
    _sql.SYNC_EXCEPTION_CONTEXT,
)


class StorageUnavailable(Exception):
    """The database cannot be reached or is shutting down; the client should retry later."""


class StorageRejected(Exception):
    """The database refused the batch's data; retrying the same batch will not help."""


class StatementFailed(Exception):
    """The database is reachable but failed the batch's statements (conflicts that kept
    recurring, or a defect): the batch may be retried later, other batches need not wait."""


# What a PostgreSQL error says about a batch, by SQLSTATE (PostgreSQL's Appendix A).
UNAVAILABLE = "unavailable"  # the server cannot serve anyone now: every client waits
CONFLICT = "conflict"  # concurrent writers collided: the same batch may simply run again
REJECTED = "rejected"  # this batch's data cannot be stored: its client gets 400
FAILED = "failed"  # a defect or a misconfiguration: this batch fails, the others go on

_CLASSES = {
    "08": UNAVAILABLE,  # connection exception
    "53": UNAVAILABLE,  # insufficient resources: disk full, out of memory, too many clients
    "57": UNAVAILABLE,  # operator intervention: shutdown, crash, not yet accepting
    "58": UNAVAILABLE,  # system error: I/O error
    "40": CONFLICT,  # transaction rollback: serialization failure, deadlock
    "22": REJECTED,  # data exception: value out of range, invalid text, bad encoding
    "23": REJECTED,  # integrity constraint violation
    "54": REJECTED,  # program limit exceeded: index row size, too many columns
}
_STATES = {
    "57014": FAILED,  # query canceled (statement_timeout or an operator): not an outage
    "23505": CONFLICT,  # unique violation: merges skip stored records; a racing writer won
}


def classify(exc: psycopg.Error) -> str:
    """UNAVAILABLE, CONFLICT, REJECTED or FAILED for a PostgreSQL error, by its SQLSTATE;
    errors without one (the connection broke before an answer) are UNAVAILABLE."""
    state = exc.sqlstate
    if state is None:  # raised by the client: a lost connection, or a value it cannot send
        if isinstance(exc, psycopg.DataError):
            return REJECTED
        lost = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        return UNAVAILABLE if lost else FAILED
    return _STATES.get(state) or _CLASSES.get(state[:2], FAILED)


class TelemetryWriter(Protocol):
    """Stores batches.

    `write` is all-or-nothing and idempotent: it returns only after the batch is durably
    committed; when it raises (StorageUnavailable, StorageRejected, StatementFailed),
    nothing of the batch is stored; writing a batch that is already stored (wholly or
    partly) changes no row and no count.
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
        try:  # encoded once, whatever the retries
            rows = _Rows.of(batch, self._known_resources)
        except (OverflowError, TypeError, ValueError) as exc:  # cannot be COPYed
            raise StorageRejected(f"unstorable value: {exc}") from None
        for attempt in range(_CONFLICT_RETRIES):
            try:
                conn = self._connection()
            except psycopg.Error as exc:  # refused, unknown database, bad password: all wait
                raise StorageUnavailable(first_line(exc)) from None
            try:
                self._ensure_partitions(conn, batch.days)
                try:
                    with conn.transaction():
                        _store(conn, rows, direct=True)
                except psycopg.errors.UniqueViolation:  # some records are stored already
                    with conn.transaction():
                        _store(conn, rows, direct=False)
                self._remember_resources(batch)
                return
            except psycopg.Error as exc:
                kind = classify(exc)
                if kind == CONFLICT and attempt < _CONFLICT_RETRIES - 1:
                    time.sleep(0.01 * (attempt + 1))
                    continue
                if kind in (UNAVAILABLE, FAILED):
                    self._drop_connection()
                if kind == UNAVAILABLE:
                    raise StorageUnavailable(first_line(exc)) from None
                if kind == REJECTED:
                    raise StorageRejected(first_line(exc)) from None
                if kind == CONFLICT:
                    raise StatementFailed("concurrent writers kept conflicting") from None
                raise StatementFailed(first_line(exc)) from None

    def close(self) -> None:
        """Close the connection; a later write reconnects."""
        self._drop_connection()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.url, connect_timeout=self.connect_timeout, autocommit=True)
            use_c_dumpers(conn)
            conn.execute(_sql.SESSION)
            conn.execute(_sql.STAGING)
            with conn.cursor() as cur:
                cur.execute("DELETE FROM _catalog")
                cur.executemany(INSERT_CATALOG, self.catalog_rows)
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


@dataclass
class _Rows:
    """A batch's rows, encoded for COPY before its transaction opens."""

    resources: CopyRows
    spans: CopyRows
    logs: CopyRows
    observations: CopyRows
    dead_letters: CopyRows

    @classmethod
    def of(cls, batch: Batch, known_resources: set[bytes]) -> _Rows:
        """`batch`'s rows, without the resources in `known_resources`."""
        new_resources = [row for key, row in batch.resources.items() if key not in known_resources]
        return cls(
            CopyRows(RESOURCES.types, new_resources),
            CopyRows(SPANS.types, batch.spans, batch.encoded_spans),
            CopyRows(LOGS.types, batch.logs),
            CopyRows(OBSERVATIONS.types, batch.observations),
            CopyRows(DEAD_LETTERS.types, batch.dead_letters),
        )


def _store(conn: psycopg.Connection, rows: _Rows, direct: bool) -> None:
    """Write `rows` in the open transaction: COPY straight into the tables when `direct`
    (a duplicate record then raises UniqueViolation), else staged and merged."""
    cur = conn.cursor()
    if rows.resources:
        cur.execute("TRUNCATE _in_resources")
        _copy(cur, "_in_resources", rows.resources)
        cur.execute(_sql.INSERT_RESOURCES)
    if direct:
        _copy(cur, "spans", rows.spans, columns_of="_in_spans")
        _copy(cur, "log_records", rows.logs, columns_of="_in_logs")
        _copy(cur, "_new_obs", rows.observations, columns_of="_in_obs")
        derive = bool(rows.observations)
    else:
        derive = _store_some_new(cur, rows)
    if rows.dead_letters:
        cur.execute("TRUNCATE _in_dead")
        _copy(cur, "_in_dead", rows.dead_letters)
    with conn.pipeline():  # COPY cannot run in a pipeline, statements can
        if derive:
            for statement in _DERIVE:
                cur.execute(statement)
        if rows.dead_letters:
            cur.execute(_sql.INSERT_DEAD_LETTERS)


def _store_some_new(cur: psycopg.Cursor, rows: _Rows) -> bool:
    """Stage records and merge those not stored yet; True if any observation is new."""
    cur.execute("TRUNCATE _in_spans, _in_logs, _in_obs, _new_records")
    _copy(cur, "_in_spans", rows.spans)
    _copy(cur, "_in_logs", rows.logs)
    _copy(cur, "_in_obs", rows.observations)
    derive = bool(rows.observations)
    if rows.spans:
        cur.execute(_sql.INSERT_SPANS_NOTING_NEW if derive else _sql.INSERT_SPANS)
    if rows.logs:
        cur.execute(_sql.INSERT_LOGS_NOTING_NEW if derive else _sql.INSERT_LOGS)
    if not derive:
        return False
    cur.execute(_sql.SELECT_NEW_OBSERVATIONS)
    return cur.rowcount > 0


def _copy(cur: psycopg.Cursor, table: str, rows: CopyRows, columns_of: str = "") -> None:
    """COPY `rows` into `table`, whose columns are those of staging table `columns_of`
    (by default, `table` is itself a staging table)."""
    if not rows:
        return
    columns = ", ".join(_COLUMNS[columns_of or table])
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        rows.send(copy)

"""Storing batches through the collector's writer as a client of the collector would, and
reading back what was stored, to compare databases or moments."""

from __future__ import annotations

import threading

import psycopg

from collectors.batch import Batch
from collectors.writer import PostgresWriter, StatementFailed
from sla.policy import load_policy

_ATTEMPTS = 8


def store_as_client(url: str, batches: list[Batch], start: threading.Barrier | None = None) -> None:
    """Write each batch in turn, again after a failure a client sees as 503, until it is
    stored; with `start`, only once every thread sharing it is ready."""
    writer = PostgresWriter(url, load_policy().catalog())
    if start is not None:
        start.wait()
    try:
        for batch in batches:
            for attempt in range(_ATTEMPTS):
                try:
                    writer.write(batch)
                    break
                except StatementFailed:
                    if attempt == _ATTEMPTS - 1:
                        raise
    finally:
        writer.close()


TABLES = (
    "spans",
    "log_records",
    "transactions",
    "stage_events",
    "exceptions",
    "exception_events",
    "dead_letters",
    "resources",
)

# Derived rows, without the columns that record when (not what) something was written.
_SNAPSHOT_QUERIES = {
    "spans": "SELECT correlation_id, trace_id, span_id, start_time, attributes FROM spans",
    "stage_events": "SELECT correlation_id, stage, system, process, reached_at, status, "
    "last_ok_at, business FROM stage_events",
    "transactions": "SELECT correlation_id, process, current_stage, stage_index, status, "
    "started_at, completed_at, customer_id, invoice_id, amount, currency FROM transactions",
    "exceptions": "SELECT correlation_id, stage, system, kind, fingerprint, error_type, message,"
    " status, first_seen, last_seen, occurrences, resolution, invoice_id, amount FROM exceptions",
    "exception_events": "SELECT correlation_id, actor, action, before, after, comment "
    "FROM exception_events",
    "dead_letters": "SELECT correlation_id, idempotency_key, target_url, method, headers, "
    "payload, error_type FROM dead_letters",
}


def counts(db: psycopg.Connection) -> dict[str, int]:
    """Row count of every table the collector writes."""
    return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def snapshot(db: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every derived row's content, sorted, for comparing two databases or two moments."""
    return {
        name: sorted(db.execute(query).fetchall(), key=repr)
        for name, query in _SNAPSHOT_QUERIES.items()
    }

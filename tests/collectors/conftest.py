"""Collector fixtures: a running collector on a fresh database, and ways to compare state."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest

from q2c.settings import Settings
from tests.support.services import running_collector

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


@pytest.fixture
def settings() -> Settings:
    """Collector settings for tests: quick Retry-After, defaults otherwise."""
    return Settings(database_url=None, retry_after_seconds=1)


@pytest.fixture
def collector_url(settings: Settings, db_url: str) -> Iterator[str]:
    """Base URL of a collector writing into the test's fresh database."""
    with running_collector(settings, db_url) as url:
        yield url


@pytest.fixture
def http(collector_url: str) -> Iterator[httpx.Client]:
    """An HTTP client aimed at the running collector."""
    with httpx.Client(base_url=collector_url, timeout=30) as client:
        yield client

"""Daily partitions are created ahead and dropped past retention (by the owner, or by the
runtime role within the limits the owner recorded), and keys dedupe telemetry."""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
import pytest

from q2c.schema import maintain_configured_partitions, maintain_partitions, record_partition_limits

TODAY = date(2026, 3, 10)


def _partitions(db: psycopg.Connection, parent: str) -> list[str]:
    rows = db.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass ORDER BY 1",
        (parent,),
    ).fetchall()
    return [name for (name,) in rows]


def _insert_span(db: psycopg.Connection, day: date, span_id: bytes = b"\x01" * 8) -> None:
    db.execute(
        "INSERT INTO spans (correlation_id, trace_id, span_id, start_time, end_time, name) "
        "VALUES ('order-1', %s, %s, %s, %s, 'post invoice') ON CONFLICT DO NOTHING",
        (b"\x02" * 16, span_id, f"{day} 12:00Z", f"{day} 12:00:01Z"),
    )


def test_maintenance_creates_today_and_the_days_ahead(
    owner_db: psycopg.Connection, owner_db_url: str
) -> None:
    db, db_url = owner_db, owner_db_url
    actions = maintain_partitions(db_url, retention_days=30, days_ahead=2, today=TODAY)

    expected = [f"{table}_p2026031{d}" for table in ("spans", "log_records") for d in (0, 1, 2)]
    assert [name for action, name in actions if action == "created"] == expected
    assert _partitions(db, "spans") == expected[:3]
    assert maintain_partitions(db_url, retention_days=30, days_ahead=2, today=TODAY) == []


def test_retention_drops_only_partitions_older_than_the_limit(
    owner_db: psycopg.Connection, owner_db_url: str
) -> None:
    db, db_url = owner_db, owner_db_url
    old, boundary = TODAY - timedelta(days=8), TODAY - timedelta(days=7)
    for day in (old, boundary):
        db.execute("SELECT q2c_ensure_partition('spans', %s)", (day,))
        _insert_span(db, day)

    actions = maintain_partitions(db_url, retention_days=7, days_ahead=0, today=TODAY)

    assert ("dropped", "spans_p20260302") in actions
    assert "spans_p20260303" in _partitions(db, "spans")
    remaining = db.execute("SELECT start_time::date FROM spans").fetchall()
    assert remaining == [(boundary,)]


def test_a_span_delivered_twice_is_stored_once(owner_db: psycopg.Connection) -> None:
    db = owner_db
    db.execute("SELECT q2c_ensure_partition('spans', %s)", (TODAY,))

    _insert_span(db, TODAY)
    _insert_span(db, TODAY)

    assert db.execute("SELECT count(*) FROM spans").fetchone() == (1,)


def test_a_span_without_its_day_partition_is_refused_not_misfiled(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="no partition"):
        _insert_span(db, TODAY)


def test_the_runtime_role_maintains_partitions_only_within_the_recorded_limits(
    db: psycopg.Connection, db_url: str, owner_db_url: str
) -> None:
    today = date.today()
    record_partition_limits(owner_db_url, retention_days=7, days_ahead=2)

    actions = maintain_configured_partitions(db_url)
    db.execute("SELECT q2c_ensure_partition('spans', %s)", (today - timedelta(days=8),))
    refused = [today - timedelta(days=9), today + timedelta(days=4)]
    for day in refused:
        with pytest.raises(psycopg.errors.CheckViolation, match="outside the retention window"):
            db.execute("SELECT q2c_ensure_partition('spans', %s)", (day,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("SELECT * FROM q2c_maintain_partitions(-1, 0, '2999-01-01')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("UPDATE q2c_settings SET retention_days = 1")

    assert len([a for a, _ in actions if a == "created"]) == 6  # today and 2 ahead, twice

"""Pruning deletes what is done and older than the retention — notifications delivered,
events routed, groups whose exceptions are all closed, ended silences — in batches, once
across replicas; never a pending delivery, an open group nor an active silence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.prune import PRUNE_LOCK_KEY, prune
from tests.support.alerting import (
    GROUP_INTERVAL,
    GROUP_WAIT,
    config,
    receiver,
    run_pass,
    storm,
    successes,
)

RETENTION = timedelta(days=30)
AGE = timedelta(days=40)  # what the test makes the alerting it ran

_BACKDATE = (
    "UPDATE alert_events SET occurred_at = occurred_at - %(age)s, routed_at = routed_at - %(age)s",
    "UPDATE alert_groups SET created_at = created_at - %(age)s, "
    "first_event_at = first_event_at - %(age)s, last_event_at = last_event_at - %(age)s, "
    "last_flushed_at = last_flushed_at - %(age)s, next_flush_at = next_flush_at - %(age)s, "
    "closed_at = closed_at - %(age)s",
    "UPDATE alert_notifications SET created_at = created_at - %(age)s, "
    "finished_at = finished_at - %(age)s, next_attempt_at = next_attempt_at - %(age)s",
)


EVENTS_OF = "SELECT count(*) FROM alert_events WHERE correlation_id LIKE %s"


def _groups(db: psycopg.Connection) -> dict[str, int]:
    """Group id by the invoice prefix of its fingerprint's exceptions."""
    rows = db.execute(
        "SELECT DISTINCT left(m.correlation_id, 6), m.group_id FROM alert_group_members m"
    ).fetchall()
    return dict(rows)


def _count(db: psycopg.Connection, query: str, *params: object) -> int:
    row = db.execute(query, params).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def old_alerting(send, run_evaluation, db: psycopg.Connection, db_url: str) -> dict[str, int]:
    """Forty days ago: ERP failures (INV-PA…) told and then resolved, a group of billing
    failures (INV-PB…) told and still open, and CRM ones (INV-PC…) resolved but whose
    resolve is still being delivered. Group ids by prefix."""
    send(storm(3, first_seq=8_000_000, prefix="INV-PA", system="erp"))
    send(storm(2, first_seq=8_100_000, prefix="INV-PB", system="billing"))
    send(storm(2, first_seq=8_200_000, prefix="INV-PC", system="crm"))
    run_evaluation()
    t0 = datetime.now(UTC)
    with receiver() as hook:
        alerts_config = config(hook.url)
        run_pass(db_url, alerts_config, t0)
        run_pass(db_url, alerts_config, t0 + GROUP_WAIT)
        send(successes([f"INV-PA{i}" for i in range(3)], first_seq=8_300_000, system="erp"))
        send(successes([f"INV-PC{i}" for i in range(2)], first_seq=8_400_000, system="crm"))
        run_pass(db_url, alerts_config, t0 + GROUP_WAIT + GROUP_INTERVAL)
    groups = _groups(db)
    db.execute(  # the resolve of INV-PC's group is still being retried
        "UPDATE alert_notifications SET status = 'pending', finished_at = NULL "
        "WHERE group_id = %s AND state = 'resolved'",
        (groups["INV-PC"],),
    )
    for statement in _BACKDATE:
        db.execute(statement, {"age": AGE})
    return groups


def test_what_is_done_and_old_goes_and_nothing_pending_open_or_active_does(
    old_alerting: dict[str, int], db: psycopg.Connection, db_url: str
) -> None:
    resolved, still_open, retrying = (old_alerting[p] for p in ("INV-PA", "INV-PB", "INV-PC"))
    now = datetime.now(UTC)
    silences = {  # reason → (starts, ends, expired at)
        "ended long ago": (now - AGE - timedelta(hours=2), now - AGE, None),
        "expired early long ago": (now - AGE, now + timedelta(days=1), now - AGE),
        "ended recently": (now - timedelta(days=11), now - timedelta(days=10), None),
        "active for months": (now - AGE, now + timedelta(days=60), None),
    }
    for reason, (starts, ends, expired) in silences.items():
        db.execute(
            "INSERT INTO alert_silences (matchers, starts_at, ends_at, reason, author, "
            "expired_by, expired_at) VALUES ('{\"system\": \"erp\"}', %s, %s, %s, 'ops', %s, %s)",
            (starts, ends, reason, "ops" if expired else None, expired),
        )
    open_events = _count(db, EVENTS_OF, "INV-PB%")

    report = prune(db_url, RETENTION, batch=1)  # one row of each kind per transaction
    again = prune(db_url, RETENTION)

    left = {row[0] for row in db.execute("SELECT id FROM alert_groups").fetchall()}
    assert resolved not in left and left == {still_open, retrying}
    assert report.groups == 1 and again.deleted == 0 and not report.skipped
    # The open group keeps its members and its events; its delivered notification is done.
    assert _count(db, "SELECT count(*) FROM alert_group_members WHERE group_id = %s", still_open)
    assert open_events > 0 and _count(db, EVENTS_OF, "INV-PB%") == open_events
    notified = "SELECT count(*) FROM alert_notifications WHERE group_id = %s"
    assert _count(db, notified, still_open) == 0
    # The resolved group's events are gone; the one still delivering keeps its pending one.
    assert _count(db, EVENTS_OF, "INV-PA%") == 0
    pending = db.execute(
        "SELECT status FROM alert_notifications WHERE group_id = %s", (retrying,)
    ).fetchall()
    assert pending == [("pending",)]
    kept = {row[0] for row in db.execute("SELECT reason FROM alert_silences").fetchall()}
    assert kept == {"ended recently", "active for months"}
    assert report.silences == 2


def test_a_replica_that_finds_pruning_under_way_skips_it(
    old_alerting: dict[str, int], db: psycopg.Connection, db_url: str
) -> None:
    with psycopg.connect(db_url) as other:  # in a transaction, holding the pruning lock
        other.execute("SELECT pg_advisory_xact_lock(%s)", (PRUNE_LOCK_KEY,))
        report = prune(db_url, RETENTION)

    assert report.skipped and report.deleted == 0
    assert _count(db, "SELECT count(*) FROM alert_groups") == 3


def test_the_runtime_role_keeps_alerting_at_least_a_day(db_url: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="kept at least a day"):
        prune(db_url, timedelta(hours=1))

"""Silences: created and expired by on-call engineers and admins, audited; while in force
they suppress the notifications they match (logged as suppressed, naming the silence),
never the exceptions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import Engine

from alerts.silences import create_silence, expire_silence, list_silences
from q2c.errors import Q2CError
from queries.roles import PermissionDenied
from tests.support.alerting import GROUP_WAIT, alerting, config, notifications, receiver, storm


def test_a_silence_suppresses_what_it_matches_and_the_log_says_which(
    send, run_evaluation, engine: Engine, users, db: psycopg.Connection, db_url: str
) -> None:
    t0 = datetime.now(UTC)
    silence = create_silence(
        engine, "ops", {"system": "erp"}, t0 + timedelta(hours=2), "ERP upgrade", starts_at=t0
    )
    send(storm(2, first_seq=7_000_000, prefix="INV-Q", system="erp"))
    send(storm(1, first_seq=7_100_000, prefix="INV-C", system="billing"))
    run_evaluation()
    with receiver() as hook:
        instance = alerting(db_url, config(hook.url))
        try:
            instance.run_once(t0)
            report = instance.run_once(t0 + GROUP_WAIT)
        finally:
            instance.close()

    assert len(report.delivery.suppressed) == 1 and len(report.delivery.delivered) == 1
    [body] = hook.bodies()
    assert body["data"]["details"]["system"] == "billing"
    [suppressed] = [row for row in notifications(db) if row["status"] == "suppressed"]
    assert suppressed["suppressed_by"].startswith(f"silence {silence.id} by ops until ")
    assert suppressed["suppressed_by"].endswith(": ERP upgrade")
    assert suppressed["attempts"] == 0  # nothing was sent
    statuses = db.execute(
        "SELECT DISTINCT status FROM exceptions WHERE correlation_id LIKE 'INV-Q%'"
    ).fetchall()
    assert statuses == [("open",)]  # the exceptions themselves are untouched


def test_an_expired_silence_no_longer_suppresses(
    send, run_evaluation, engine: Engine, users, db: psycopg.Connection, db_url: str
) -> None:
    t0 = datetime.now(UTC)
    silence = create_silence(
        engine,
        "ada",
        {"impact": ["critical", "high", "medium", "low"]},
        t0 + timedelta(days=1),
        "noisy week",
        starts_at=t0 - timedelta(minutes=1),
    )
    expired = expire_silence(engine, "ops", silence.id, now=t0)
    send(storm(1, first_seq=7_200_000, prefix="INV-U"))
    run_evaluation()
    with receiver() as hook:
        instance = alerting(db_url, config(hook.url))
        try:
            instance.run_once(t0)
            report = instance.run_once(t0 + GROUP_WAIT)
        finally:
            instance.close()

    assert (expired.expired_by, expired.ended_at) == ("ops", t0)
    assert not expired.active(t0) and len(report.delivery.delivered) == 1
    with pytest.raises(Q2CError, match="no silence"):
        expire_silence(engine, "ops", silence.id, now=t0)


def test_only_on_call_engineers_and_admins_silence_and_each_act_is_audited(
    engine: Engine, users, db: psycopg.Connection
) -> None:
    t0 = datetime.now(UTC)
    with pytest.raises(PermissionDenied, match="needs the oncall role"):
        create_silence(engine, "fin", {"system": "erp"}, t0 + timedelta(hours=1), "quiet please")
    silence = create_silence(engine, "ops", {"system": "erp"}, t0 + timedelta(hours=1), "upgrade")
    with pytest.raises(PermissionDenied):
        expire_silence(engine, "fin", silence.id)
    expire_silence(engine, "ada", silence.id)

    audit = db.execute(
        "SELECT actor, action, object_id, detail->'matchers' FROM audit_log "
        "WHERE object_type = 'silence' ORDER BY id"
    ).fetchall()
    assert audit == [
        ("ops", "silence.create", str(silence.id), {"system": ["erp"]}),
        ("ada", "silence.expire", str(silence.id), {"system": ["erp"]}),
    ]


def test_silences_in_force_or_to_come_are_listed_and_ended_ones_on_request(
    engine: Engine, users
) -> None:
    t0 = datetime.now(UTC)
    ended = create_silence(
        engine,
        "ops",
        {"process": "invoice_posting"},
        t0 + timedelta(minutes=5),
        "short",
        starts_at=t0 - timedelta(hours=1),
    )
    current = create_silence(engine, "ops", {"system": "erp"}, t0 + timedelta(hours=2), "now")
    coming = create_silence(
        engine,
        "ops",
        {"fingerprint": "abc"},
        t0 + timedelta(days=2),
        "tomorrow",
        starts_at=t0 + timedelta(days=1),
    )
    later = t0 + timedelta(minutes=10)

    assert [s.id for s in list_silences(engine, "cio", now=later)] == [coming.id, current.id]
    every = list_silences(engine, "cio", include_ended=True, now=later)
    assert [s.id for s in every] == [coming.id, current.id, ended.id]


def test_a_matcher_of_no_known_label_is_refused_naming_it(engine: Engine, users) -> None:
    ends = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(Q2CError, match="colour"):
        create_silence(engine, "ops", {"colour": "red"}, ends, "why not")
    with pytest.raises(Q2CError, match="impact"):
        create_silence(engine, "ops", {"impact": "apocalyptic"}, ends, "why not")
    with pytest.raises(Q2CError, match="at least one matcher"):
        create_silence(engine, "ops", {}, ends, "everything")

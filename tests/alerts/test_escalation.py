"""Escalations: an open exception nobody took `unacknowledged_after` it opened is told to
the step's channels once, through the notification log; with an injected `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import Engine

from queries.exceptions import assign
from tests.support.alerting import alerting, config, notifications, receiver, run_pass, storm

AFTER = timedelta(minutes=30)


def _config(hook: str):
    # The routes tell nobody of these exceptions: what the hook receives is escalation.
    return config(
        hook,
        routes=[{"match": {"event": "slo.alert"}, "to": ["ops-hook"]}],
        escalations=[
            {
                "match": {"process": "invoice_posting"},
                "unacknowledged_after": "30m",
                "to": "ops-hook",
            }
        ],
    )


def _ids(db: psycopg.Connection) -> list[int]:
    return [row[0] for row in db.execute("SELECT id FROM exceptions ORDER BY id").fetchall()]


def test_an_unacknowledged_exception_is_escalated_once_after_its_time(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(2, first_seq=10))
    run_evaluation()
    opened = datetime.now(UTC)
    with receiver() as hook:
        alerts_config = _config(hook.url)
        before = run_pass(db_url, alerts_config, opened + AFTER - timedelta(minutes=1))
        due = run_pass(db_url, alerts_config, opened + AFTER + timedelta(seconds=1))
        again = run_pass(db_url, alerts_config, opened + AFTER + timedelta(minutes=5))

    assert before.escalation.escalated == {} and before.delivery.delivered == []
    assert due.escalation.escalated == {1: _ids(db)}
    assert again.escalation.escalated == {} and again.escalation.groups == []
    [event] = hook.bodies()  # the two alike exceptions, in one message
    assert event["data"]["count"] == 2
    assert event["data"]["title"].startswith("Escalation 1, unacknowledged after 30m:")
    assert event["data"]["link"].startswith("http://console.test:8501/exceptions?grouped=yes")
    [logged] = notifications(db)
    assert logged["status"] == "delivered" and logged["route"] == "escalation:1"
    steps = db.execute("SELECT exception_id, step FROM alert_escalations ORDER BY 1").fetchall()
    assert steps == [(i, 1) for i in _ids(db)]


def test_an_assigned_exception_is_not_escalated(
    send, run_evaluation, users, engine: Engine, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(2, first_seq=10))
    run_evaluation()
    opened = datetime.now(UTC)
    taken, left = _ids(db)
    assign(engine, "fin", [taken], "ops")
    with receiver() as hook:
        due = run_pass(db_url, _config(hook.url), opened + AFTER + timedelta(seconds=1))

    assert due.escalation.escalated == {1: [left]}
    [event] = hook.bodies()
    assert event["data"]["count"] == 1
    assert event["data"]["link"] == f"http://console.test:8501/exceptions?id={left}"


def test_two_replicas_passes_escalate_once(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(1, first_seq=10))
    run_evaluation()
    later = datetime.now(UTC) + AFTER + timedelta(seconds=1)
    with receiver() as hook:
        alerts_config = _config(hook.url)
        first, second = alerting(db_url, alerts_config), alerting(db_url, alerts_config)
        try:
            reports = [first.run_once(later), second.run_once(later)]
        finally:
            first.close()
            second.close()

    assert sum(len(r.escalation.groups) for r in reports) == 1
    assert len(hook.bodies()) == 1 and len(notifications(db)) == 1


def test_a_step_escalates_only_the_exceptions_it_matches(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(
        storm(1, first_seq=10, system="erp"),
        storm(1, first_seq=20, prefix="INV-B", system="billing"),
    )
    run_evaluation()
    [billing] = db.execute("SELECT id FROM exceptions WHERE system = 'billing'").fetchone() or []
    later = datetime.now(UTC) + timedelta(hours=1)
    with receiver() as hook:
        alerts_config = config(
            hook.url,
            routes=[{"match": {"event": "slo.alert"}, "to": ["ops-hook"]}],
            escalations=[
                {"match": {"system": "crm"}, "unacknowledged_after": "30m", "to": "ops-hook"},
                {
                    "match": {"system": ["billing", "crm"]},
                    "unacknowledged_after": "1h",
                    "to": "ops-hook",
                },
            ],
        )
        due = run_pass(db_url, alerts_config, later)

    assert due.escalation.escalated == {2: [billing]}
    [event] = hook.bodies()
    assert event["data"]["title"].startswith("Escalation 2, unacknowledged after 1h:")

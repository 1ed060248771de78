"""Digests: sent on their cron schedule once per occurrence, through the notification log,
with the figures of the moment; with an injected `now`, no sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from tests.support.alerting import config, notifications, receiver, run_pass, storm


def _config(hook: str, schedule: str, content: str):
    # No route tells anybody of the exceptions: what the hook receives is the digest.
    return config(
        hook,
        routes=[{"match": {"event": "slo.alert"}, "to": ["ops-hook"]}],
        digests=[
            {"name": "finance-daily", "schedule": schedule, "to": "ops-hook", "content": content}
        ],
    )


def _next_hour() -> datetime:
    return (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)


def test_an_aging_digest_is_sent_once_per_occurrence_with_the_figures(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(3, first_seq=10))
    run_evaluation()
    occurrence = _next_hour()
    ids = [row[0] for row in db.execute("SELECT id FROM exceptions ORDER BY id").fetchall()]
    # One long overdue, and known amounts: the figures the digest must give.
    db.execute(
        "UPDATE exceptions SET due_at = %s - interval '2 hours' WHERE id = %s",
        (occurrence, ids[0]),
    )
    db.execute("UPDATE exceptions SET due_at = NULL WHERE id <> %s", (ids[0],))
    db.execute(
        "UPDATE exceptions SET amount = CASE id WHEN %s THEN 100 WHEN %s THEN 2500.5 END, "
        "currency = 'EUR' WHERE id IN (%s, %s)",
        (ids[0], ids[1], ids[0], ids[1]),
    )
    db.execute("UPDATE exceptions SET amount = 40, currency = 'USD' WHERE id = %s", (ids[2],))
    with receiver() as hook:
        alerts_config = _config(hook.url, f"0 {occurrence.hour} * * *", "aging")
        early = run_pass(db_url, alerts_config, occurrence - timedelta(minutes=1))
        due = run_pass(db_url, alerts_config, occurrence + timedelta(minutes=1))
        again = run_pass(db_url, alerts_config, occurrence + timedelta(minutes=10))

    assert early.digests.sent == {} and again.digests.sent == {}
    assert due.digests.sent == {"finance-daily": occurrence}
    [event] = hook.bodies()
    assert event["type"] == "q2c.digest"
    data = event["data"]
    assert data["title"] == "Digest finance-daily: open exceptions by impact and age"
    assert data["link"] == "http://console.test:8501/exceptions"
    text = data["text"]
    assert "Open exceptions: 3, overdue 1" in text
    assert f"Oldest overdue (1 of 1):\n- #{ids[0]} " in text
    assert f"http://console.test:8501/exceptions?id={ids[0]}" in text
    assert "- 2,600.50 EUR in 2\n- 40.00 USD in 1" in text
    assert f"Largest:\n- 2,500.50 EUR #{ids[1]} " in text
    [logged] = notifications(db)
    assert logged["status"] == "delivered" and logged["route"] == "digest:finance-daily"
    runs = db.execute("SELECT digest, occurrence FROM alert_digest_runs").fetchall()
    assert runs == [("finance-daily", occurrence)]
    [(facts,)] = db.execute("SELECT facts FROM alert_events WHERE type = 'digest'").fetchall()
    assert facts["figures"]["open"] == 3 and facts["figures"]["overdue"] == 1


def test_a_kpi_digest_compares_with_the_period_before(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(2, first_seq=10))
    run_evaluation()
    occurrence = _next_hour()
    with receiver() as hook:
        alerts_config = _config(hook.url, f"0 {occurrence.hour} * * *", "kpis")
        due = run_pass(db_url, alerts_config, occurrence + timedelta(seconds=30))
        again = run_pass(db_url, alerts_config, occurrence + timedelta(minutes=5))

    assert due.digests.sent == {"finance-daily": occurrence} and again.digests.sent == {}
    [event] = hook.bodies()
    text = event["data"]["text"]
    start = (occurrence - timedelta(days=1)).isoformat()[:16]
    assert text.startswith(f"KPIs from {start} to {occurrence.isoformat()[:16]} UTC")
    assert "Open exceptions: 2" in text
    assert "Replays: 0 requested (was 0)" in text
    assert event["data"]["link"] == "http://console.test:8501/"

"""Routing and grouping with Alertmanager's semantics: events of the outbox filed into the
groups of the routes they match, each group told once per flush, with an injected `now`
(no test sleeps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Engine

import alerts.flush
from alerts.compose import compose
from queries.exceptions import assign, close_exceptions, reopen, unassign
from tests.support.alerting import (
    GROUP_INTERVAL,
    GROUP_WAIT,
    REPEAT_INTERVAL,
    config,
    notifications,
    receiver,
    run_pass,
    storm,
    successes,
)


def test_a_storm_of_5000_alike_failures_is_one_notification_that_counts_them(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(5000, first_seq=1_000_000))
    run_evaluation()
    now = datetime.now(UTC)
    with receiver() as hook:
        alerts_config = config(hook.url)
        waiting = run_pass(db_url, alerts_config, now)
        told = run_pass(db_url, alerts_config, now + GROUP_WAIT)
        again = run_pass(db_url, alerts_config, now + GROUP_WAIT + timedelta(seconds=1))

    assert waiting.events == 5000 and waiting.notifications == 0
    assert told.notifications == 1 and again.notifications == 0
    [event] = hook.bodies()
    assert event["type"] == "q2c.exception.opened"
    assert event["data"]["count"] == 5000
    assert "5,000 exceptions: 5,000 open" in event["data"]["text"]
    assert event["data"]["link"].startswith("http://console.test:8501/exceptions?grouped=yes")
    [logged] = notifications(db)
    assert logged["status"] == "delivered" and logged["message"]["count"] == 5000
    unrouted = db.execute("SELECT count(*) FROM alert_events WHERE routed_at IS NULL").fetchone()
    assert unrouted == (0,)
    assert db.execute("SELECT count(*) FROM alert_outbox").fetchone() == (0,)  # all unpacked


def test_a_group_waits_then_batches_changes_per_interval_and_repeats_while_firing(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(1, first_seq=2_000_000, prefix="INV-G"))
    run_evaluation()
    t0 = datetime.now(UTC)
    second = t0 + timedelta(minutes=1)  # another alike failure, a minute after the first
    told_at = t0 + GROUP_WAIT
    with receiver() as hook:
        alerts_config = config(hook.url)

        def flushes(now: datetime) -> int:
            return run_pass(db_url, alerts_config, now).notifications

        timeline = [flushes(t0), flushes(told_at - timedelta(seconds=1)), flushes(told_at)]
        send(storm(1, first_seq=2_100_000, prefix="INV-H"))
        run_evaluation()
        timeline += [
            flushes(second),  # changed, but told less than group_interval ago
            flushes(told_at + GROUP_INTERVAL - timedelta(seconds=1)),
            flushes(told_at + GROUP_INTERVAL),  # the change, batched
        ]
        last = told_at + GROUP_INTERVAL
        timeline += [
            flushes(last + REPEAT_INTERVAL - timedelta(seconds=1)),
            flushes(last + REPEAT_INTERVAL),  # unchanged and still firing: told again
        ]

    assert timeline == [0, 0, 1, 0, 0, 1, 0, 1]
    counts = [body["data"]["count"] for body in hook.bodies()]
    assert counts == [1, 2, 2]
    assert [row["flush"] for row in notifications(db)] == [1, 2, 3]
    assert len({row["dedup_key"] for row in notifications(db)}) == 1


def test_an_auto_resolved_group_resolves_its_incident_with_the_same_dedup_key(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(3, first_seq=3_000_000, prefix="INV-P"))
    run_evaluation()
    t0 = datetime.now(UTC)
    with receiver() as hook, receiver() as pager:
        alerts_config = config(hook.url, pager.url)
        run_pass(db_url, alerts_config, t0)
        run_pass(db_url, alerts_config, t0 + GROUP_WAIT)
        send(successes(["INV-P0", "INV-P1"], first_seq=3_100_000))
        partly = run_pass(db_url, alerts_config, t0 + GROUP_WAIT + GROUP_INTERVAL)
        send(successes(["INV-P2"], first_seq=3_200_000))
        resolved_at = t0 + GROUP_WAIT + 2 * GROUP_INTERVAL
        resolved = run_pass(db_url, alerts_config, resolved_at)
        after = run_pass(db_url, alerts_config, resolved_at + REPEAT_INTERVAL)

    actions = [(body["event_action"], body["dedup_key"]) for body in pager.bodies()]
    assert [action for action, _ in actions] == ["trigger", "resolve"]
    assert actions[0][1] == actions[1][1]
    assert partly.notifications == 0  # two of three closed: nothing new to tell
    assert resolved.closed == resolved.told and after.notifications == 0
    assert hook.bodies()[-1]["data"]["status"] == "resolved"


def test_assigning_one_of_its_exceptions_acknowledges_the_group(
    send, run_evaluation, engine: Engine, users, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(2, first_seq=4_000_000, prefix="INV-K"))
    run_evaluation()
    t0 = datetime.now(UTC)
    with receiver() as hook, receiver() as pager:
        alerts_config = config(hook.url, pager.url)
        run_pass(db_url, alerts_config, t0)
        run_pass(db_url, alerts_config, t0 + GROUP_WAIT)
        (exception_id,) = db.execute(
            "SELECT id FROM exceptions WHERE correlation_id = 'INV-K0'"
        ).fetchone()
        assign(engine, "fin", [exception_id], "ops")
        acknowledged = run_pass(db_url, alerts_config, t0 + GROUP_WAIT + GROUP_INTERVAL)
        quiet = run_pass(db_url, alerts_config, t0 + GROUP_WAIT + REPEAT_INTERVAL * 2)

    assert [body["event_action"] for body in pager.bodies()] == ["trigger", "acknowledge"]
    assert acknowledged.notifications == 2 and quiet.notifications == 0  # no repeat once taken


def test_a_group_first_told_acknowledged_opens_its_incident_then_acknowledges_it(
    send, run_evaluation, engine: Engine, users, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(2, first_seq=4_200_000, prefix="INV-Q"))
    run_evaluation()
    t0 = datetime.now(UTC)
    with receiver() as hook, receiver() as pager:
        alerts_config = config(hook.url, pager.url)
        run_pass(db_url, alerts_config, t0)  # the group opens and waits group_wait
        (exception_id,) = db.execute(
            "SELECT id FROM exceptions WHERE correlation_id = 'INV-Q0'"
        ).fetchone()
        assign(engine, "fin", [exception_id], "ops")  # taken before anybody was told
        run_pass(db_url, alerts_config, t0 + GROUP_WAIT)

    sent = pager.bodies()
    # PagerDuty drops an acknowledge of an incident it does not have.
    assert [body["event_action"] for body in sent] == ["trigger", "acknowledge"]
    assert sent[0]["dedup_key"] == sent[1]["dedup_key"]
    assert sent[0]["payload"]["summary"].startswith("[")  # "[high] Exception opened: …"
    assert hook.bodies()[0]["data"]["status"] == "acknowledged"


def test_unassigning_its_only_taken_exception_sets_the_group_firing_again(
    send, run_evaluation, engine: Engine, users, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(1, first_seq=4_500_000, prefix="INV-U"))
    run_evaluation()
    t0 = datetime.now(UTC)
    (exception_id,) = db.execute(
        "SELECT id FROM exceptions WHERE correlation_id = 'INV-U0'"
    ).fetchone()
    with receiver() as hook, receiver() as pager:
        alerts_config = config(hook.url, pager.url)
        run_pass(db_url, alerts_config, t0)
        run_pass(db_url, alerts_config, t0 + GROUP_WAIT)
        assign(engine, "fin", [exception_id], "ops")
        run_pass(db_url, alerts_config, t0 + GROUP_WAIT + GROUP_INTERVAL)
        unassign(engine, "fin", [exception_id])
        firing = run_pass(db_url, alerts_config, t0 + GROUP_WAIT + 2 * GROUP_INTERVAL)

    actions = [(body["event_action"], body["dedup_key"]) for body in pager.bodies()]
    assert [action for action, _ in actions] == ["trigger", "acknowledge", "trigger"]
    assert len({key for _, key in actions}) == 1
    assert firing.notifications == 2
    assert hook.bodies()[-1]["data"]["status"] == "firing"


def test_reopening_an_exception_triggers_its_resolved_incident_again_with_the_same_key(
    send, run_evaluation, engine: Engine, users, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(1, first_seq=4_600_000, prefix="INV-R"))
    run_evaluation()
    t0 = datetime.now(UTC)
    (exception_id,) = db.execute(
        "SELECT id FROM exceptions WHERE correlation_id = 'INV-R0'"
    ).fetchone()
    reopenings = {"match": {"event": "exception.reopened"}, "to": ["ops-hook"]}
    default = {"match": {"event": "exception.opened"}, "to": ["ops-hook", "pager"]}
    with receiver() as hook, receiver() as pager:
        alerts_config = config(hook.url, pager.url, routes=[default, reopenings])
        run_pass(db_url, alerts_config, t0)
        run_pass(db_url, alerts_config, t0 + GROUP_WAIT)
        close_exceptions(engine, "fin", [exception_id], "resolved", "reposted by hand")
        resolved = run_pass(db_url, alerts_config, t0 + GROUP_WAIT + GROUP_INTERVAL)
        reopen(engine, "fin", [exception_id], "the ERP still refuses it")
        soon = t0 + GROUP_WAIT + GROUP_INTERVAL + timedelta(seconds=1)
        waiting = run_pass(db_url, alerts_config, soon)  # told resolved under a minute ago
        again = run_pass(db_url, alerts_config, t0 + GROUP_WAIT + 2 * GROUP_INTERVAL)

    actions = [(body["event_action"], body["dedup_key"]) for body in pager.bodies()]
    assert [action for action, _ in actions] == ["trigger", "resolve", "trigger"]
    assert len({key for _, key in actions}) == 1
    assert resolved.closed == resolved.told
    # Told resolved a moment ago: firing again once group_interval has passed since, with
    # the reopening's own route's group (past its group_wait) on the webhook.
    assert waiting.notifications == 0 and again.notifications == 3
    told = [(body["type"], body["data"]["status"]) for body in hook.bodies()]
    assert told[:2] == [("q2c.exception.opened", "firing"), ("q2c.exception.opened", "resolved")]
    assert sorted(told[2:]) == [
        ("q2c.exception.opened", "firing"),
        ("q2c.exception.reopened", "firing"),
    ]
    (groups,) = db.execute("SELECT count(*) FROM alert_groups").fetchone()
    assert groups == 2  # the opened exceptions' group, open again; the reopenings'


def test_every_matching_route_notifies_until_one_says_stop(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(1, first_seq=5_000_000, prefix="INV-E", system="erp"))
    send(storm(1, first_seq=5_100_000, prefix="INV-B", system="billing"))
    run_evaluation()
    now = datetime.now(UTC)
    with receiver() as hook:
        alerts_config = config(
            hook.url,
            routes=[
                {
                    "match": {"event": "exception.opened", "system": ["crm", "erp"]},
                    "to": ["ops-hook"],
                    "continue": False,
                },
                {
                    "match": {"event": "exception.opened"},
                    "to": ["ops-hook"],
                    "group_by": ["system"],
                },
                {
                    "match": {
                        "event": ["exception.opened", "exception.overdue"],
                        "system": "billing",
                    },
                    "to": ["ops-hook"],
                },
            ],
        )
        run_pass(db_url, alerts_config, now)
        run_pass(db_url, alerts_config, now + GROUP_WAIT)

    routed = sorted(
        (row["route"][:9], row["message"]["details"]["system"]) for row in notifications(db)
    )
    assert routed == [("routes[0]", "erp"), ("routes[1]", "billing"), ("routes[2]", "billing")]


def _slo_alert(db: psycopg.Connection, process: str, burn_rates: dict) -> None:
    facts = {"process": process, "state": "page", "previous": "ok", "burn_rates": burn_rates}
    db.execute(
        "INSERT INTO slo_alert_states (process, state, changed_at) VALUES (%s, 'page', now())",
        (process,),
    )
    db.execute("INSERT INTO alert_events (type, facts) VALUES ('slo.alert', %s)", (Jsonb(facts),))


SLO_ROUTE = {"match": {"event": "slo.alert"}, "to": ["ops-hook"], "group_by": ["process"]}


def _told_after_the_wait(db_url: str) -> tuple[int, list]:
    """A pass now and one a group wait later, routing SLO alerts by process to a webhook:
    the notifications the second wrote, and the bodies the webhook received."""
    now = datetime.now(UTC)
    with receiver() as hook:
        alerts_config = config(hook.url, routes=[SLO_ROUTE])
        run_pass(db_url, alerts_config, now)
        told = run_pass(db_url, alerts_config, now + GROUP_WAIT)
    return told.notifications, hook.bodies()


def test_an_slo_alert_with_a_window_without_events_is_told_without_its_rate(
    db: psycopg.Connection, db_url: str
) -> None:
    _slo_alert(db, "invoice_posting", {"5m": 14.4, "1h": None})

    notifications, [event] = _told_after_the_wait(db_url)

    assert notifications == 1
    assert "ok → page; burn rates 1h —, 5m 14.4x" in event["data"]["text"]


def test_a_group_whose_message_cannot_be_composed_holds_up_no_other(
    db: psycopg.Connection, db_url: str, monkeypatch, caplog
) -> None:
    _slo_alert(db, "broken_process", {"5m": 20.0})
    _slo_alert(db, "invoice_posting", {"5m": 20.0})

    def compose_or_fail(group, base, now):
        if group.labels.get("process") == "broken_process":
            raise ValueError("a defect in composing")
        return compose(group, base, now)

    monkeypatch.setattr(alerts.flush, "compose", compose_or_fail)

    notifications, bodies = _told_after_the_wait(db_url)

    assert notifications == 1
    assert [body["data"]["title"] for body in bodies] == ["SLO alert: invoice_posting"]
    assert "no notification composed" in caplog.text

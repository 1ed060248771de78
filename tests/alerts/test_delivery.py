"""Delivery: exactly once per notification and channel with two deliverers at once, retries
with backoff, a channel that is down never delaying the others, maintenance windows that
suppress only within their schedule, every outcome in the notification log."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg

from alerts.run import RunReport
from tests.support.alerting import (
    GROUP_WAIT,
    Received,
    alerting,
    config,
    notifications,
    receiver,
    run_pass,
    storm,
    successes,
)
from tests.support.peers import free_port

_BY_TRANSACTION = [
    {"match": {"event": "exception.opened"}, "to": ["ops-hook"], "group_by": ["correlation_id"]}
]


def test_the_log_says_when_each_notification_was_sent_not_when_the_pass_began(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(3, first_seq=6_100_000, prefix="INV-W"))  # three groups, one per invoice
    run_evaluation()
    t0 = datetime.now(UTC)
    with receiver() as hook:
        alerts_config = config(hook.url, routes=_BY_TRANSACTION)
        run_pass(db_url, alerts_config, t0)
        run_pass(db_url, alerts_config, t0 + GROUP_WAIT)

    sent = db.execute(
        "SELECT created_at, last_attempt_at, finished_at FROM alert_notifications "
        "WHERE status = 'delivered' ORDER BY finished_at"
    ).fetchall()
    assert len(sent) == 3
    assert all(created <= tried < finished for created, tried, finished in sent)
    # One after another through the channel, each logged as it ended.
    assert sent[0][2] < sent[1][2] < sent[2][2]


def test_two_schedulers_at_once_deliver_each_notification_once(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(40, first_seq=6_000_000, prefix="INV-X"))  # 40 groups, one per invoice
    run_evaluation()
    t0 = datetime.now(UTC)
    with receiver() as hook:
        alerts_config = config(hook.url, routes=_BY_TRANSACTION)
        schedulers = [alerting(db_url, alerts_config) for _ in range(2)]
        start = threading.Barrier(2)
        reports: list[RunReport] = []

        def scheduler(index: int) -> None:
            start.wait()
            for seconds in (0, 30, 31, 60):  # both pass at the same moments
                reports.append(schedulers[index].run_once(t0 + timedelta(seconds=seconds)))

        threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for instance in schedulers:
            instance.close()

    ids = [request.headers["webhook-id"] for request in hook.received]
    assert len(ids) == 40 and len(set(ids)) == 40
    subjects = sorted(body["subject"] for body in hook.bodies())
    assert subjects == sorted(f"INV-X{i}" for i in range(40))
    logged = notifications(db)
    assert len(logged) == 40 and {row["status"] for row in logged} == {"delivered"}
    assert {row["attempts"] for row in logged} == {1}
    assert sum(len(r.delivery.delivered) for r in reports) == 40


def test_a_refused_delivery_is_retried_with_backoff_and_every_attempt_logged(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(1, first_seq=6_100_000, prefix="INV-Y"))
    run_evaluation()
    t0 = datetime.now(UTC)
    answers = iter([(503, {"error": "busy"}), (204, {})])
    with receiver(lambda _: next(answers)) as hook:
        alerts_config = config(hook.url)
        run_pass(db_url, alerts_config, t0)
        first = run_pass(db_url, alerts_config, t0 + GROUP_WAIT)
        [pending] = notifications(db)
        early = run_pass(db_url, alerts_config, pending["next_attempt_at"] - timedelta(seconds=1))
        second = run_pass(db_url, alerts_config, pending["next_attempt_at"])

    assert first.delivery.retrying == [pending["id"]] and early.delivery.retrying == []
    assert pending["status"] == "pending" and "503" in pending["outcome"]
    assert t0 + GROUP_WAIT < pending["next_attempt_at"] <= t0 + GROUP_WAIT + timedelta(seconds=8)
    assert second.delivery.delivered == [pending["id"]]
    [done] = notifications(db)
    assert (done["status"], done["attempts"]) == ("delivered", 2)
    # the same message both times, for the consumer to deduplicate by
    assert len({request.headers["webhook-id"] for request in hook.received}) == 1


def test_an_answer_that_will_never_succeed_fails_at_once_with_the_reason(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(1, first_seq=6_200_000, prefix="INV-Z"))
    run_evaluation()
    t0 = datetime.now(UTC)
    with receiver(lambda _: (400, {"message": "no such route"})) as hook:
        alerts_config = config(hook.url)
        run_pass(db_url, alerts_config, t0)
        report = run_pass(db_url, alerts_config, t0 + GROUP_WAIT)

    [failed] = notifications(db)
    assert report.delivery.failed == [failed["id"]]
    assert (failed["status"], failed["attempts"]) == ("failed", 1)
    assert "400" in failed["outcome"] and report.delivery.reasons[failed["id"]]


def test_a_resolve_waits_for_its_trigger_still_to_be_retried(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(1, first_seq=6_250_000, prefix="INV-O"))
    run_evaluation()
    t0 = datetime.now(UTC)
    answers = iter([(503, {"status": "busy"}, {"retry-after": "3600"})])

    def pagerduty(_: Received) -> tuple[int, object] | tuple[int, object, dict[str, str]]:
        return next(answers, (202, {"status": "success"}))

    with receiver() as hook, receiver(pagerduty) as pager:
        alerts_config = config(hook.url, pager.url)
        run_pass(db_url, alerts_config, t0)
        run_pass(db_url, alerts_config, t0 + GROUP_WAIT)  # the trigger: asked to wait an hour
        send(successes(["INV-O0"], first_seq=6_260_000))
        held = run_pass(db_url, alerts_config, t0 + GROUP_WAIT + timedelta(minutes=5))
        # An hour after PagerDuty answered (a moment after the pass began).
        both = run_pass(db_url, alerts_config, t0 + GROUP_WAIT + timedelta(hours=1, minutes=1))

    assert held.notifications == 2 and len(held.delivery.delivered) == 1  # the webhook only
    assert [body["event_action"] for body in pager.bodies()] == ["trigger", "trigger", "resolve"]
    assert len(both.delivery.delivered) == 2


def test_a_channel_that_is_down_or_slow_does_not_delay_the_others(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    send(storm(1, first_seq=6_300_000, prefix="INV-D"))
    run_evaluation()
    t0 = datetime.now(UTC)
    hook_delivered = threading.Event()
    seen_while_in_flight: list[bool] = []

    def slow(_: Received) -> tuple[int, object]:
        # PagerDuty answers only once the webhook has been delivered (or after 10 s):
        # delivered one after the other, the webhook would come after this answer.
        seen_while_in_flight.append(hook_delivered.wait(10))
        return 503, {"status": "unavailable"}

    def fast(_: Received) -> tuple[int, object]:
        hook_delivered.set()
        return 204, {}

    with receiver(fast) as hook, receiver(slow) as pager:
        alerts_config = config(hook.url, pager.url)
        run_pass(db_url, alerts_config, t0)
        report = run_pass(db_url, alerts_config, t0 + GROUP_WAIT)
        down = config(hook.url, f"http://127.0.0.1:{free_port()}/v2/enqueue")
        send(storm(1, first_seq=6_400_000, prefix="INV-D", error="other"))  # a new group
        run_evaluation()
        run_pass(db_url, down, t0 + GROUP_WAIT)
        refused = run_pass(db_url, down, t0 + 2 * GROUP_WAIT)

    assert seen_while_in_flight == [True]
    assert len(report.delivery.delivered) == 1 and len(report.delivery.retrying) == 1
    assert len(refused.delivery.delivered) == 1  # the webhook, though PagerDuty is down
    logged = {(row["channel"], row["group_id"]): row for row in notifications(db)}
    pager_rows = [row for (channel, _), row in logged.items() if channel == "pager"]
    assert {row["status"] for row in pager_rows} == {"pending"}
    assert any("refused" in (row["outcome"] or "") for row in pager_rows)
    assert len(hook.received) == 2


def test_a_maintenance_window_suppresses_only_within_its_schedule(
    send, run_evaluation, db: psycopg.Connection, db_url: str
) -> None:
    saturday = datetime(2031, 3, 1, tzinfo=UTC)  # a Saturday
    window = {
        "name": "erp-upgrade",
        "match": {"system": "erp"},
        "schedule": "0 2 * * 6",
        "duration": "4h",
    }
    with receiver() as hook:
        once = {
            "match": {"event": "exception.opened"},
            "to": ["ops-hook"],
            "group_by": ["fingerprint"],
            "repeat_interval": "24h",
        }  # no repeats here
        alerts_config = config(hook.url, routes=[once], maintenance=[window])
        moments = []
        cases = [
            (1, "erp", "ledger closed"),  # before the window
            (3, "erp", "tax engine down"),  # within it
            (3, "billing", "card declined"),  # within it, but not what it matches
            (7, "erp", "period locked"),  # after it
        ]
        for seq, (hour, system, error) in enumerate(cases):
            send(
                storm(
                    1,
                    first_seq=6_500_000 + 1000 * seq,
                    prefix=f"INV-M{seq}-",
                    system=system,
                    error=error,
                )
            )
            run_evaluation()
            told_at = saturday.replace(hour=hour)
            run_pass(db_url, alerts_config, told_at - GROUP_WAIT)
            moments.append(run_pass(db_url, alerts_config, told_at).delivery)

    assert [len(m.suppressed) for m in moments] == [0, 1, 0, 0]
    assert [len(m.delivered) for m in moments] == [1, 0, 1, 1]
    suppressed = [row for row in notifications(db) if row["status"] == "suppressed"]
    assert len(suppressed) == 1
    assert suppressed[0]["suppressed_by"].startswith("maintenance window erp-upgrade")
    assert len(hook.received) == 3

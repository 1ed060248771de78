"""Replays reach their targets exactly once, with retries, backoff and Retry-After, and
never outside the allow-list."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import Engine

from queries.replays import request_replays
from queries.roles import PermissionDenied
from replay.dispatcher import Dispatcher
from tests.support.replays import drain

DEADLINE = 30  # in seconds
ALLOWED = frozenset({"127.0.0.1"})


def test_a_replay_retries_on_503_and_then_succeeds_once(
    engine: Engine, db: psycopg.Connection, targets, dead_letters, dispatcher
) -> None:
    state, _ = targets
    (letter,) = dead_letters(1)
    state.inject("erp", "unavailable", 2)

    outcome = request_replays(engine, "ops", [letter], ALLOWED)
    drain(dispatcher, db)

    replay_id = outcome.created[letter]
    assert db.execute(
        "SELECT status, attempts, response_code FROM replays WHERE id = %s", (replay_id,)
    ).fetchone() == ("succeeded", 3, 200)
    assert [status for _, _, status in state.requests] == [503, 503, 200]
    (applied,) = state.applied
    assert applied.body == b'{"invoice": "INV-R0"}'
    assert applied.method == "POST" and applied.headers["content-type"] == "application/json"
    key = db.execute("SELECT idempotency_key FROM dead_letters WHERE id = %s", (letter,))
    assert applied.idempotency_key == key.fetchone()[0]
    assert db.execute("SELECT status FROM dead_letters").fetchone() == ("replayed",)
    assert db.execute(
        "SELECT e.status FROM exceptions e JOIN dead_letters d ON d.exception_id = e.id"
    ).fetchone() == ("replayed",)
    assert db.execute("SELECT actor, action FROM exception_events ORDER BY id").fetchall() == [
        ("ops", "replay_requested"),
        ("system:replay", "replayed"),
    ]
    # Each names its dead letter, by which the audit log finds them.
    named = db.execute(
        "SELECT (after ->> 'dead_letter_id')::bigint FROM exception_events ORDER BY id"
    )
    assert [n for (n,) in named.fetchall()] == [letter, letter]


def test_retry_after_from_the_target_sets_the_next_attempt(
    engine: Engine, db: psycopg.Connection, targets, dead_letters, dispatcher
) -> None:
    state, _ = targets
    (letter,) = dead_letters(1)
    state.inject("erp", "rate_limited", 1, retry_after=7)

    request_replays(engine, "ops", [letter], ALLOWED)
    report = dispatcher.run_once()

    assert report.retrying and not report.succeeded
    wait = db.execute("SELECT next_attempt_at - last_attempt_at, status FROM replays").fetchone()
    assert wait[1] == "pending"
    assert timedelta(seconds=6.5) <= wait[0] <= timedelta(seconds=8)


def test_a_permanent_rejection_fails_without_retrying(
    engine: Engine, db: psycopg.Connection, targets, dead_letters, dispatcher
) -> None:
    state, _ = targets
    (letter,) = dead_letters(1)
    state.inject("erp", "reject", 1)

    request_replays(engine, "ops", [letter], ALLOWED)
    drain(dispatcher, db)

    assert db.execute("SELECT status, attempts, response_code FROM replays").fetchone() == (
        "failed",
        1,
        422,
    )
    assert db.execute("SELECT status FROM dead_letters").fetchone() == ("dead",)
    assert db.execute(
        "SELECT action, (after ->> 'dead_letter_id')::bigint FROM exception_events ORDER BY id"
    ).fetchall() == [("replay_requested", letter), ("replay_failed", letter)]


def test_a_target_that_never_recovers_fails_after_the_last_attempt(
    engine: Engine, db: psycopg.Connection, targets, dead_letters, dispatcher
) -> None:
    state, _ = targets
    (letter,) = dead_letters(1)
    state.inject("erp", "unavailable", 100)

    request_replays(engine, "ops", [letter], ALLOWED)
    drain(dispatcher, db)

    status, attempts, error = db.execute("SELECT status, attempts, error FROM replays").fetchone()
    assert (status, attempts) == ("failed", 4)
    assert "gave up after 4 attempts" in error
    assert not state.applied


def test_targets_outside_the_allow_list_are_refused(
    engine: Engine, db: psycopg.Connection, dead_letters
) -> None:
    (letter,) = dead_letters(1)

    outcome = request_replays(engine, "ops", [letter], frozenset({"erp.internal"}))

    assert "not in Q2C_REPLAY_ALLOWED_HOSTS" in outcome.refused[letter]
    assert db.execute("SELECT count(*) FROM replays").fetchone() == (0,)


def test_a_double_click_gives_one_delivery(
    engine: Engine, db: psycopg.Connection, targets, dead_letters, dispatcher
) -> None:
    state, _ = targets
    (letter,) = dead_letters(1)

    first = request_replays(engine, "ops", [letter], ALLOWED)
    second = request_replays(engine, "ops", [letter], ALLOWED)
    drain(dispatcher, db)
    third = request_replays(engine, "ops", [letter], ALLOWED)

    assert second.existing == first.created
    assert "already replayed successfully" in third.refused[letter]
    assert len(state.applied) == 1


def test_two_engineers_at_once_give_one_delivery(
    engine: Engine, db: psycopg.Connection, targets, dead_letters, dispatcher
) -> None:
    state, _ = targets
    letters = dead_letters(5)
    start = threading.Barrier(2)
    outcomes = []

    def engineer(name: str) -> None:
        start.wait()
        outcomes.append(request_replays(engine, name, letters, ALLOWED))

    threads = [threading.Thread(target=engineer, args=(name,)) for name in ("ops", "ops2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drain(dispatcher, db)

    assert db.execute("SELECT count(*) FROM replays").fetchone() == (5,)
    assert sum(len(o.created) for o in outcomes) == 5
    assert sum(len(o.existing) for o in outcomes) == 5
    assert sorted(state.applied_keys()) == sorted(set(state.applied_keys()))
    assert len(state.applied) == 5


def test_two_dispatchers_at_once_deliver_each_replay_once(
    engine: Engine, db: psycopg.Connection, db_url: str, targets, dead_letters, replay_settings
) -> None:
    state, _ = targets
    letters = dead_letters(30)
    request_replays(engine, "ops", letters, ALLOWED)
    dispatchers = [Dispatcher(db_url, replay_settings) for _ in range(2)]
    start = threading.Barrier(2)

    def run(dispatcher: Dispatcher) -> None:
        start.wait()
        for _ in range(5):
            dispatcher.run_once(limit=4)

    threads = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drain(dispatchers[0], db)
    for dispatcher in dispatchers:
        dispatcher.close()

    keys = [key for _, key, status in state.requests]
    assert len(keys) == len(set(keys)) == 30  # every replay sent exactly once
    assert db.execute("SELECT count(*) FROM replays WHERE status = 'succeeded'").fetchone() == (30,)


def test_an_edited_payload_is_sent_and_the_original_kept(
    engine: Engine, db: psycopg.Connection, targets, dead_letters, dispatcher
) -> None:
    state, _ = targets
    (letter,) = dead_letters(1)

    with pytest.raises(PermissionDenied, match="requesting replays needs the oncall role"):
        request_replays(engine, "fin", [letter], ALLOWED, payload='{"invoice": "X"}')
    request_replays(engine, "ops", [letter], ALLOWED, payload='{"invoice": "INV-R0", "tax": "T1"}')
    drain(dispatcher, db)

    assert state.applied[0].body == b'{"invoice": "INV-R0", "tax": "T1"}'
    assert db.execute("SELECT payload FROM dead_letters").fetchone() == ('{"invoice": "INV-R0"}',)
    before, after = db.execute(
        "SELECT before, after FROM exception_events WHERE action = 'replay_requested'"
    ).fetchone()
    assert before["original_payload"] == '{"invoice": "INV-R0"}'
    assert after["payload"] == '{"invoice": "INV-R0", "tax": "T1"}'

"""Every way a delivery can fail ends its replay in a terminal state with the reason, and
never stops the dispatcher: the other replays of the same pass are delivered as usual."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from cli.main import main
from q2c.settings import Settings
from queries.replays import request_replays
from replay.dispatcher import Dispatcher
from replay.transport import Delivery
from tests.support.peers import free_port, tcp_peer
from tests.support.replays import drain

DEADLINE = 60  # in seconds
NO_SUCH_HOST = "q2c-no-such-host.invalid"  # .invalid never resolves (RFC 6761)
ALLOWED = frozenset({"127.0.0.1", NO_SUCH_HOST})


def _settings(**overrides: object) -> Settings:
    values = {
        "database_url": None,
        "replay_allowed_hosts": ",".join(ALLOWED),
        "replay_backoff_seconds": 0.01,
        "replay_rate_per_host": 1000,
        "replay_timeout_seconds": 0.5,
        "replay_max_attempts": 3,
        **overrides,
    }
    return Settings(**values)


def _outcome(db: psycopg.Connection, dead_letter: int) -> tuple:
    return db.execute(
        "SELECT status, attempts, response_code, error FROM replays WHERE dead_letter_id = %s",
        (dead_letter,),
    ).fetchone()


def _deliver_one(engine, db, db_url, dead_letters, target: str, **settings: object) -> tuple:
    (letter,) = dead_letters(1, target=target)
    request_replays(engine, "ops", [letter], ALLOWED)
    dispatcher = Dispatcher(db_url, _settings(**settings))
    try:
        drain(dispatcher, db)
    finally:
        dispatcher.close()
    return _outcome(db, letter)


def test_a_refused_connection_fails_the_replay_and_spares_the_others_in_its_pass(
    engine: Engine, db: psycopg.Connection, db_url: str, targets, dead_letters
) -> None:
    state, _ = targets
    good = dead_letters(2)
    (bad,) = dead_letters(1, first=2, target=f"http://127.0.0.1:{free_port()}/erp")
    request_replays(engine, "ops", [bad, *good], ALLOWED)

    dispatcher = Dispatcher(db_url, _settings())
    try:
        drain(dispatcher, db)
    finally:
        dispatcher.close()

    assert _outcome(db, bad) == ("failed", 3, None, "connection refused; gave up after 3 attempts")
    assert [_outcome(db, letter)[:3] for letter in good] == [("succeeded", 1, 200)] * 2
    assert len(state.applied) == 2
    (failed_event,) = db.execute(
        "SELECT after, comment FROM exception_events WHERE action = 'replay_failed'"
    ).fetchall()
    assert failed_event[0]["response_code"] is None
    assert failed_event[1] == "connection refused; gave up after 3 attempts"


def test_run_once_reports_a_failed_delivery_and_exits_cleanly(
    engine: Engine, db_url: str, dead_letters, monkeypatch: pytest.MonkeyPatch
) -> None:
    (letter,) = dead_letters(1, target=f"http://127.0.0.1:{free_port()}/erp")
    request_replays(engine, "ops", [letter], ALLOWED)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("Q2C_REPLAY_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("Q2C_REPLAY_MAX_ATTEMPTS", "1")

    result = CliRunner().invoke(main, ["replay", "run-once"])

    assert result.exit_code == 0, result.output
    assert "claimed 1: 0 succeeded, 0 will retry, 1 failed" in result.output
    assert "failed: connection refused; gave up after 1 attempt" in result.output


def test_a_target_that_never_answers_times_out_and_fails(
    engine: Engine, db: psycopg.Connection, db_url: str, dead_letters
) -> None:
    with tcp_peer("silent") as port:
        outcome = _deliver_one(engine, db, db_url, dead_letters, f"http://127.0.0.1:{port}/x")

    assert outcome == ("failed", 3, None, "no answer within 0.5 s; gave up after 3 attempts")


def test_a_reset_connection_fails_with_its_reason(
    engine: Engine, db: psycopg.Connection, db_url: str, dead_letters
) -> None:
    with tcp_peer("reset") as port:
        outcome = _deliver_one(engine, db, db_url, dead_letters, f"http://127.0.0.1:{port}/x")

    status, attempts, code, error = outcome
    assert (status, attempts, code) == ("failed", 3, None)
    assert error in (
        "connection reset by the target; gave up after 3 attempts",
        # The reset may reach the client as a closed connection before any answer.
        "the target broke the HTTP exchange: Server disconnected without sending a response.; "
        "gave up after 3 attempts",
    )


def test_an_unknown_host_fails_with_the_dns_error(
    engine: Engine, db: psycopg.Connection, db_url: str, dead_letters
) -> None:
    outcome = _deliver_one(engine, db, db_url, dead_letters, f"http://{NO_SUCH_HOST}/erp")

    status, attempts, _, error = outcome
    assert (status, attempts) == ("failed", 3)
    assert error.startswith("DNS lookup failed: ") and error.endswith("gave up after 3 attempts")


def test_a_tls_failure_fails_at_once(
    engine: Engine, db: psycopg.Connection, db_url: str, targets, dead_letters
) -> None:
    _, base = targets  # plain HTTP: a TLS client gets no handshake from it
    outcome = _deliver_one(engine, db, db_url, dead_letters, base.replace("http:", "https:"))

    status, attempts, _, error = outcome
    assert (status, attempts) == ("failed", 1)
    assert error.startswith("TLS handshake failed")


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("reject", ("failed", 1, 422, "HTTP 422: not retried")),
        ("unavailable", ("failed", 3, 503, "HTTP 503; gave up after 3 attempts")),
    ],
)
def test_http_errors_end_in_a_terminal_state(
    engine: Engine, db: psycopg.Connection, db_url: str, targets, dead_letters, fault, expected
) -> None:
    state, base = targets
    state.inject("erp", fault, 100)

    outcome = _deliver_one(engine, db, db_url, dead_letters, f"{base}/erp/invoices/X")

    assert outcome == expected


def test_retry_after_beyond_the_deadline_fails_instead_of_arriving_late(
    engine: Engine, db: psycopg.Connection, db_url: str, targets, dead_letters
) -> None:
    state, base = targets
    state.inject("erp", "rate_limited", 1, retry_after=7200)

    outcome = _deliver_one(
        engine, db, db_url, dead_letters, f"{base}/erp/invoices/X", replay_deadline_seconds=3600
    )

    assert outcome == (
        "failed",
        1,
        429,
        "HTTP 429; the target asked to retry in 7200 s, past the replay deadline "
        "(3600 s after the request)",
    )
    assert not state.applied


def test_an_answer_that_cannot_be_stored_as_it_is_still_ends_the_replay(
    engine: Engine, db: psycopg.Connection, db_url: str, dead_letters
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\napp\x00lied!"
    with tcp_peer("answer", answer) as port:
        outcome = _deliver_one(engine, db, db_url, dead_letters, f"http://127.0.0.1:{port}/x")

    assert outcome[:3] == ("succeeded", 1, 200)
    excerpt = db.execute("SELECT response_excerpt FROM replays").fetchone()[0]
    assert excerpt == "applied!"


class _TakeOver:
    """A transport that, while it delivers the first replay, lets another dispatcher take
    over the second (its lease ran out): the first dispatcher must then not send it."""

    def __init__(self, db: psycopg.Connection, second: int) -> None:
        self.db, self.second, self.sent = db, second, []

    def send(self, method, url, headers, body, timeout):
        self.sent.append(url)
        self.db.execute(
            "UPDATE replays SET attempts = attempts + 1, lease_until = now() + interval '1 min' "
            "WHERE id = %s",
            (self.second,),
        )
        return Delivery(200, None, "ok")

    def close(self) -> None:
        pass


def test_a_replay_taken_over_while_its_batch_is_delivered_is_not_sent_twice(
    engine: Engine, db: psycopg.Connection, db_url: str, dead_letters
) -> None:
    letters = dead_letters(2)
    outcome = request_replays(engine, "ops", letters, ALLOWED)
    first, second = (outcome.created[letter] for letter in letters)
    transport = _TakeOver(db, second)
    dispatcher = Dispatcher(db_url, _settings(), transport=transport)

    report = dispatcher.run_once()

    assert len(transport.sent) == 1 and report.succeeded == [first]
    assert db.execute(
        "SELECT status, attempts FROM replays WHERE id = %s", (second,)
    ).fetchone() == (
        "delivering",
        2,
    )


def test_a_replay_past_its_deadline_is_not_sent_late(
    engine: Engine, db: psycopg.Connection, db_url: str, targets, dead_letters
) -> None:
    state, _ = targets
    (letter,) = dead_letters(1)
    request_replays(engine, "ops", [letter], ALLOWED)
    db.execute("UPDATE replays SET requested_at = now() - interval '2 hours'")

    dispatcher = Dispatcher(db_url, _settings())
    try:
        drain(dispatcher, db)
    finally:
        dispatcher.close()

    assert _outcome(db, letter) == (
        "failed",
        1,
        None,
        "not delivered within the replay deadline (3600 s after the request)",
    )
    assert not state.requests

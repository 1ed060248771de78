"""A replay target that a client would misread (control characters, credentials, a bad port)
is refused when its dead letter is stored, when a replay is requested and when it is about
to be delivered, each time naming the target; the message itself is kept."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from cli.main import main
from queries.replays import request_replays
from replay.targets import method_problem, refusal, target_problem

ALLOWED = frozenset({"127.0.0.1", "allowed-host"})
BAD_TARGETS = {
    "newline": ("http://127.0.0.1:18081\n@127.0.0.1:18080/x", "contains control characters"),
    "tab": ("http://127.0.0.1:18080/\tx", "contains control characters"),
    "malformed port": ("http://h:1:2/", "has an invalid port"),
    "userinfo": ("http://user:pw@allowed-host/", "carries credentials"),
    "not http": ("ftp://127.0.0.1/x", "is not an http:// or https:// URL"),
}


@pytest.mark.parametrize("name", BAD_TARGETS)
def test_unusable_targets_are_named_and_refused(name: str) -> None:
    target, reason = BAD_TARGETS[name]

    problem = refusal(target, ALLOWED)

    assert problem is not None and reason in problem
    assert "pw" not in problem and "\n" not in problem and "\t" not in problem


def test_usable_targets_pass_and_the_allow_list_still_applies() -> None:
    assert target_problem("https://erp.example.com:8443/invoices?id=1") is None
    assert refusal("http://127.0.0.1:8701/erp", ALLOWED) is None
    assert "not in Q2C_REPLAY_ALLOWED_HOSTS" in refusal("http://erp.example.com/", ALLOWED)


def test_a_dead_letter_with_an_unusable_target_is_kept_and_its_replay_refused(
    engine: Engine, db: psycopg.Connection, dead_letters
) -> None:
    target, reason = BAD_TARGETS["newline"]
    (letter,) = dead_letters(1, target=target)

    stored = db.execute(
        "SELECT target_url, target_error, payload FROM dead_letters WHERE id = %s", (letter,)
    ).fetchone()
    outcome = request_replays(engine, "ops", [letter], ALLOWED)

    assert stored[0] is None and reason in stored[1] and stored[2] == '{"invoice": "INV-R0"}'
    assert reason in outcome.refused[letter]
    assert db.execute("SELECT count(*) FROM replays").fetchone() == (0,)


def test_a_stored_target_made_unusable_fails_at_delivery_and_spares_the_others(
    engine: Engine, db: psycopg.Connection, targets, dead_letters, dispatcher
) -> None:
    state, _ = targets
    letters = dead_letters(3)
    request_replays(engine, "ops", letters, ALLOWED)
    # As stored by a version that checked less: the dispatcher must not hand it to httpx.
    db.execute(
        "UPDATE dead_letters SET target_url = %s WHERE id = %s",
        (BAD_TARGETS["newline"][0], letters[1]),
    )

    report = dispatcher.run_once()

    assert sorted(report.succeeded) == sorted(
        r
        for (r,) in db.execute(
            "SELECT id FROM replays WHERE dead_letter_id <> %s", (letters[1],)
        ).fetchall()
    )
    (failed,) = report.failed
    assert "contains control characters" in report.reasons[failed]
    assert len(state.applied) == 2


def test_replay_request_by_filter_names_a_malformed_target_without_a_traceback(
    db_url: str, dead_letters, tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_letters(1, target="http://h:1:2/")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("Q2C_TOKEN", tokens["ops"])
    monkeypatch.setenv("Q2C_REPLAY_ALLOWED_HOSTS", "127.0.0.1,h")

    result = CliRunner().invoke(main, ["replay", "request", "--filter", "INV-R", "--as", "ops"])

    assert result.exit_code == 2, result.output
    assert "refused: target http://h:1:2/ has an invalid port" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_urls_a_parser_cannot_read_and_ipv6_hosts_are_handled() -> None:
    assert target_problem("http://[x/") == "target http://[x/ is not a valid URL"
    assert refusal("http://[::1]:8080/x", frozenset({"[::1]:8080"})) is None
    assert refusal("http://[::1]/x", frozenset({"[::1]"})) is None
    assert "not in Q2C_REPLAY_ALLOWED_HOSTS" in refusal("http://h:81/", frozenset({"h:80"}))


def test_a_token_in_the_userinfo_is_never_shown() -> None:
    problem = target_problem("http://ghp_s3cr3t@allowed-host/hook")

    assert problem is not None and "ghp_s3cr3t" not in problem and "•••@allowed-host" in problem


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "GET", "P0ST"])
def test_methods_that_deliver_no_message_are_refused(
    engine: Engine, db: psycopg.Connection, dead_letters, dispatcher, method: str
) -> None:
    assert method_problem(method) is not None
    letters = dead_letters(1)
    request_replays(engine, "ops", letters, ALLOWED)
    db.execute("UPDATE dead_letters SET method = %s", (method,))

    report = dispatcher.run_once()

    (failed,) = report.failed
    assert "is not one a replay may use" in report.reasons[failed]

"""Secrets in dead-lettered payloads reach no screen and no terminal: the query layer masks
them for the CLI (text and JSON), the console, the audit trail and the trace explorer; an
engineer edits the masked document, and only the dispatcher sends the original values."""

from __future__ import annotations

import json

import psycopg
import pytest
import streamlit as st
from click.testing import CliRunner
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from cli.main import main
from q2c import masking
from q2c.errors import Q2CError
from queries.exceptions import exception_detail
from queries.replays import (
    dead_letter_detail,
    list_dead_letters,
    replay_status,
    request_replays,
)
from queries.transactions import journey
from queries.users import User
from replay.targets import target_problem
from tests.support.console import APP
from tests.support.replays import drain

SECRETS = ("hunter2", "4111111111111111", "s3cr3t-api-key", "abcdefghijklmnop", "987")
PAYLOAD = json.dumps(
    {
        "invoice": "INV-R0",
        "amount": 1200.5,
        "credentials": {"user": "erp-bot", "password": "hunter2"},
        "card": {"number": "4111111111111111", "cvv": 987},
        "notes": ["call back", "Bearer abcdefghijklmnop"],
    }
)
ALLOWED = frozenset({"127.0.0.1"})
HEADERS = {"Authorization": "Bearer abcdefghijklmnop", "X-Api-Key": "s3cr3t-api-key"}


@pytest.fixture
def secret_letter(dead_letters) -> int:
    (letter,) = dead_letters(1, payload=PAYLOAD, headers=HEADERS)
    return letter


def _clean(text: str) -> bool:
    return not any(secret in text for secret in SECRETS)


def test_the_cli_shows_dead_letters_masked_as_text_and_json(
    db_url: str, tokens, secret_letter: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("Q2C_TOKEN", tokens["ops"])
    runner = CliRunner()

    text = runner.invoke(main, ["dead-letters", "show", str(secret_letter)])
    as_json = runner.invoke(main, ["dead-letters", "show", str(secret_letter), "--json"])

    assert text.exit_code == 0 and as_json.exit_code == 0, text.output + as_json.output
    assert "INV-R0" in text.output and "•••" in text.output
    assert _clean(text.output) and _clean(as_json.output)
    shown = json.loads(as_json.output)
    assert shown["headers"]["Authorization"] == "•••"
    assert json.loads(shown["payload"])["credentials"] == "•••"


def test_an_edited_masked_payload_is_sent_with_its_original_secrets(
    engine: Engine, db: psycopg.Connection, targets, secret_letter: int, dispatcher
) -> None:
    state, _ = targets
    shown = json.loads(dead_letter_detail(engine, "ops", secret_letter)["payload"])
    shown["amount"] = 1250.0  # the correction the engineer makes

    request_replays(engine, "ops", [secret_letter], ALLOWED, payload=json.dumps(shown))
    drain(dispatcher, db)

    (applied,) = state.applied
    assert json.loads(applied.body) == {**json.loads(PAYLOAD), "amount": 1250.0}
    before, after = db.execute(
        "SELECT before, after FROM exception_events WHERE action = 'replay_requested'"
    ).fetchone()
    assert _clean(json.dumps(before)) and _clean(json.dumps(after))
    assert json.loads(after["payload"])["amount"] == 1250.0


def test_exception_history_and_the_trace_explorer_show_payloads_masked(
    engine: Engine, db: psycopg.Connection, secret_letter: int
) -> None:
    shown = dead_letter_detail(engine, "ops", secret_letter)
    request_replays(engine, "ops", [secret_letter], ALLOWED, payload=shown["payload"])
    (exception_id,) = db.execute("SELECT id FROM exceptions").fetchone()

    detail = exception_detail(engine, exception_id)
    path = journey(engine, "INV-R0")

    assert _clean(json.dumps(detail["history"], default=str))
    assert _clean(json.dumps(path["logs"], default=str))
    assert "•••" in json.dumps(path["logs"], default=str, ensure_ascii=False)


def test_keys_named_in_q2c_mask_keys_are_masked_too(
    engine: Engine, dead_letters, monkeypatch: pytest.MonkeyPatch
) -> None:
    (letter,) = dead_letters(1, payload='{"invoice": "INV-R0", "tax_registration": "DE123"}')
    monkeypatch.setenv("Q2C_MASK_KEYS", "tax registration")
    masking.configured.cache_clear()
    try:
        shown = json.loads(dead_letter_detail(engine, "ops", letter)["payload"])
    finally:
        masking.configured.cache_clear()

    assert shown == {"invoice": "INV-R0", "tax_registration": "•••"}


def test_the_console_shows_and_edits_the_masked_payload(
    db_url: str, users, secret_letter: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    st.cache_resource.clear()  # the engine of an earlier test's database
    st.cache_data.clear()
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.session_state["user"] = User("ops", "oncall", "Ops")
    app.run()
    app.switch_page("app_pages/dead_letters.py").run()

    assert not app.exception
    shown = [block.value for block in app.code] + [area.value for area in app.text_area]
    assert shown and all(_clean(value) for value in shown)
    assert any("•••" in value for value in shown)


def test_secrets_in_failure_messages_are_masked_as_stored_so_search_cannot_probe_them(
    engine: Engine, db: psycopg.Connection, dead_letters
) -> None:
    (letter,) = dead_letters(
        1,
        target="http://127.0.0.1:9/x?token=t0k3n-s3cr3t",
        message="card 4111 1111 1111 1111 declined",
    )
    stored = db.execute(
        "SELECT e.message, d.error_message FROM exceptions e JOIN dead_letters d "
        "ON d.exception_id = e.id"
    ).fetchone()

    assert stored == ("card ••• declined", "card ••• declined")
    assert list_dead_letters(engine, "ops", None, "4111") == []
    assert list_dead_letters(engine, "ops", None, "t0k3n") == []
    assert list_dead_letters(engine, "ops", None, "127.0.0.1:9/x")[0]["id"] == letter


def test_an_edited_payload_stands_for_exactly_one_dead_letter(engine: Engine, dead_letters) -> None:
    letters = dead_letters(2)

    with pytest.raises(Q2CError, match="name exactly one"):
        request_replays(engine, "ops", letters, ALLOWED, payload='{"invoice": "INV-R0"}')


def test_span_attributes_and_events_reach_the_trace_explorer_masked(
    engine: Engine, db: psycopg.Connection
) -> None:
    attributes = {
        "q2c.correlation_id": "INV-S1",
        "http.request.header.authorization": HEADERS["Authorization"],
    }
    events = [{"name": "retry", "attributes": {"password": "hunter2", "card": "4111111111111111"}}]
    db.execute("SELECT q2c_ensure_partition('spans', current_date)")
    db.execute(
        "INSERT INTO spans (correlation_id, trace_id, span_id, start_time, end_time, name, "
        "attributes, events) VALUES ('INV-S1', %s, %s, now(), now(), 'call', %s, %s)",
        (b"\x01" * 16, b"\x02" * 8, json.dumps(attributes), json.dumps(events)),
    )
    db.commit()

    [span] = journey(engine, "INV-S1")["spans"]

    assert _clean(json.dumps(span, default=str))
    assert span["attributes"]["q2c.correlation_id"] == "INV-S1"
    assert span["events"][0]["name"] == "retry"


def test_a_token_in_the_targets_query_string_reaches_no_screen_but_the_replay_sends_it(
    engine: Engine,
    db: psycopg.Connection,
    db_url: str,
    targets,
    dead_letters,
    dispatcher,
    tokens,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, base = targets
    (letter,) = dead_letters(1, target=f"{base}/erp/invoices/INV-R0?token=TARGET-SECRET-1")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("Q2C_TOKEN", tokens["ops"])

    request_replays(engine, "ops", [letter], ALLOWED)
    drain(dispatcher, db)
    (exception_id,) = db.execute("SELECT id FROM exceptions").fetchone()
    shown = [
        json.dumps(list_dead_letters(engine, "ops"), default=str, ensure_ascii=False),
        json.dumps(dead_letter_detail(engine, "ops", letter), default=str, ensure_ascii=False),
        json.dumps(replay_status(engine, "ops"), default=str, ensure_ascii=False),
        json.dumps(
            exception_detail(engine, exception_id)["dead_letters"], default=str, ensure_ascii=False
        ),
        CliRunner().invoke(main, ["dead-letters", "show", str(letter), "--json"]).output,
        CliRunner().invoke(main, ["replay", "status"]).output,
    ]

    assert [text for text in shown if "TARGET-SECRET-1" in text] == []
    assert all("token=•••" in text for text in shown[:4]), shown
    assert len(state.applied) == 1  # delivered to the target as stored
    stored = db.execute("SELECT target_url FROM dead_letters WHERE id = %s", (letter,))
    assert stored.fetchone()[0].endswith("?token=TARGET-SECRET-1")


def test_a_refused_targets_token_is_masked_in_its_reason_which_the_collector_logs() -> None:
    reason = target_problem("ftp://127.0.0.1/x?api_key=TARGET-SECRET-2")

    assert reason is not None and "api_key=•••" in reason
    assert "TARGET-SECRET-2" not in reason

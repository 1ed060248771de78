"""The Alerts page: channels (masked) with their test send, routes and owners as configured,
silences created and expired behind confirmations, and the notification log of real
notifications (exceptions made by the collector, routed and delivered to a loopback
receiver), for every role and its refusals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import streamlit as st
import yaml
from streamlit.testing.v1 import AppTest

from alerts.silences import create_silence
from q2c.database import create_db_engine
from q2c.settings import Settings
from queries.user_admin import set_role
from queries.users import User
from tests.support.alerting import ENVIRON, SECRET, Receiver, alerting, config, receiver
from tests.support.console import APP, LOGINS


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as got:
        yield got


@pytest.fixture
def alerts_yaml(tmp_path: Path, hook: Receiver, monkeypatch: pytest.MonkeyPatch) -> Path:
    """alerts.yaml with the webhook `ops-hook` at the loopback receiver, set for the console."""
    path = tmp_path / "alerts.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "console_url": "http://console.test:8501",
                "channels": {
                    "ops-hook": {"type": "webhook", "url": hook.url, "secret_env": "HOOK_SECRET"}
                },
                "owners": [{"match": {"kind": "dead_letter"}, "owner": "oncall"}],
                "routes": [
                    {"match": {"event": "exception.opened"}, "to": ["ops-hook"]},
                ],
            }
        )
    )
    monkeypatch.setenv("Q2C_ALERTS_CONFIG", str(path))
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    return path


@pytest.fixture
def notified_db(console_db: str, hook: Receiver) -> str:
    """The console database whose exceptions (made by the collector) were routed and
    delivered to the loopback webhook, the failures to nowhere."""
    setup = config(hook.url, "http://127.0.0.1:9/nowhere")
    runner = alerting(console_db, setup)
    try:
        runner.run_once()
        runner.run_once(datetime.now(UTC) + timedelta(minutes=1))  # past group_wait
    finally:
        runner.close()
    return console_db


def _texts(app: AppTest) -> str:
    return " ".join(
        str(e.value) for kind in (app.error, app.warning, app.success, app.info) for e in kind
    )


ROLES = ("viewer", "finance_ops", "oncall", "admin")


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_what_it_may_and_is_refused_the_rest(
    notified_db: str, alerts_yaml: Path, console_app: Callable[..., AppTest], role: str
) -> None:
    app = console_app(notified_db, role, "alerts")

    assert not app.exception, app.exception
    if role == "viewer":
        assert [e.value for e in app.error] == [
            "You cannot open this page: viewing alerting and the notification log needs the "
            f"finance_ops role or higher; {LOGINS[role][0]} is viewer."
        ]
        return
    assert not app.error, [e.value for e in app.error]
    assert app.title[0].value == "Alerts"
    may_act = role in ("oncall", "admin")
    keys = {button.key for button in app.button}
    assert ("send_test" in keys) is may_act
    assert ("create_silence" in keys) is may_act
    captions = " ".join(c.value for c in app.caption)
    if not may_act:
        assert "needs the oncall role or higher" in captions


def test_channels_show_variable_names_never_secrets(
    notified_db: str, alerts_yaml: Path, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(notified_db, "finance_ops", "alerts")

    channels = app.dataframe[0].value
    assert list(channels["channel"]) == ["ops-hook"]
    assert "$HOOK_SECRET" in channels["secrets from"][0]
    shown = " ".join(str(frame.value.to_dict()) for frame in app.dataframe)
    assert SECRET not in shown
    routes, owners = app.dataframe[1].value, app.dataframe[2].value
    assert list(routes["match"]) == ["event=exception.opened"]
    assert list(owners["owner"]) == ["oncall"]


def test_the_log_lists_real_notifications_newest_first_and_filters_by_status(
    notified_db: str, alerts_yaml: Path, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(notified_db, "finance_ops", "alerts")
    log = next(f.value for f in app.dataframe if "outcome" in f.value.columns)

    assert set(log["status"]) >= {"delivered"}
    assert list(log["id"]) == sorted(log["id"], reverse=True)
    assert set(log["channel"]) == {"ops-hook", "pager"}

    app.selectbox(key="log_status").set_value("delivered").run()
    log = next(f.value for f in app.dataframe if "outcome" in f.value.columns)
    assert set(log["status"]) == {"delivered"}
    assert set(log["channel"]) == {"ops-hook"}


def test_the_log_says_what_suppressed_a_notification_where_others_say_how_they_ended(
    console_db: str, alerts_yaml: Path, hook: Receiver, console_app: Callable[..., AppTest]
) -> None:
    engine = create_db_engine(console_db, Settings(database_url=None))
    try:
        create_silence(
            engine, "oncall", {"system": "erp"}, datetime.now(UTC) + timedelta(hours=1), "upgrade"
        )
    finally:
        engine.dispose()
    runner = alerting(console_db, config(hook.url, "http://127.0.0.1:9/nowhere"))
    try:
        runner.run_once()
        runner.run_once(datetime.now(UTC) + timedelta(minutes=1))  # past group_wait
    finally:
        runner.close()

    app = console_app(console_db, "oncall", "alerts")
    log = next(f.value for f in app.dataframe if "outcome" in f.value.columns)

    suppressed = log[log["status"] == "suppressed"]["outcome"]
    assert len(suppressed) and all(o.startswith("suppressed by silence ") for o in suppressed)
    assert all(log[log["status"] != "suppressed"]["outcome"].str.len() > 0)
    assert "suppressed_by" not in log.columns


def test_send_test_delivers_through_the_channel_after_confirming(
    notified_db: str, alerts_yaml: Path, hook: Receiver, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(notified_db, "oncall", "alerts")
    before = len(hook.received)

    app.button(key="send_test").click().run()
    assert len(hook.received) == before  # only the confirmation opened
    app.button(key="confirm_test").click().run()

    assert not app.exception
    assert len(hook.received) == before + 1
    assert hook.received[-1].body["type"] == "q2c.test"
    assert "Test to ops-hook delivered" in _texts(app)
    with psycopg.connect(notified_db) as db:
        audited = db.execute(
            "SELECT actor, object_id, detail ->> 'outcome' FROM audit_log "
            "WHERE action = 'alert.test'"
        ).fetchall()
    assert [(actor, channel) for actor, channel, _ in audited] == [
        (LOGINS["oncall"][0], "ops-hook")
    ]
    assert audited[0][2].startswith("delivered")


def test_oncall_creates_then_expires_a_silence_both_audited(
    notified_db: str, alerts_yaml: Path, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(notified_db, "oncall", "alerts")
    app.text_area(key="silence_matchers").set_value("system=erp\nimpact=critical,high")
    app.text_input(key="silence_for").set_value("2h")
    app.text_input(key="silence_reason").set_value("ERP upgrade tonight")
    app.button(key="create_silence").click().run()
    app.button(key="confirm_silence").click().run()

    assert not app.exception
    assert "Silence 1 created" in _texts(app)
    with psycopg.connect(notified_db) as db:
        matchers, author = db.execute("SELECT matchers, author FROM alert_silences").fetchone()
        assert matchers == {"system": ["erp"], "impact": ["critical", "high"]}
        assert author == LOGINS["oncall"][0]

    app.button(key="expire_silence").click().run()
    app.button(key="confirm_expire").click().run()

    assert "Silence 1 expired" in _texts(app)
    with psycopg.connect(notified_db) as db:
        actions = [
            row[0]
            for row in db.execute(
                "SELECT action FROM audit_log WHERE object_type = 'silence' ORDER BY id"
            )
        ]
    assert actions == ["silence.create", "silence.expire"]


def test_a_silence_with_an_unknown_key_is_refused_naming_it(
    notified_db: str, alerts_yaml: Path, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(notified_db, "oncall", "alerts")
    app.text_area(key="silence_matchers").set_value("colour=blue")
    app.text_input(key="silence_reason").set_value("why not")
    app.button(key="create_silence").click().run()

    # Said at once, before any confirmation, with the keys a silence may match.
    assert "confirm_silence" not in [button.key for button in app.button]
    [warning] = [w.value for w in app.warning if "colour" in w.value]
    assert "colour: unknown key (use kind, impact, process, stage, system, event," in warning
    with psycopg.connect(notified_db) as db:
        assert db.execute("SELECT count(*) FROM alert_silences").fetchone() == (0,)


def test_a_config_that_does_not_load_is_shown_by_its_key_paths(
    console_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    console_app: Callable[..., AppTest],
) -> None:
    bad = tmp_path / "alerts.yaml"
    bad.write_text("routes:\n  - to: [nowhere]\n    group_wait: 30x\n")
    monkeypatch.setenv("Q2C_ALERTS_CONFIG", str(bad))

    app = console_app(console_db, "finance_ops", "alerts")

    assert not app.exception
    [error] = [e.value for e in app.error]
    assert "routes[0].group_wait" in error
    assert "routes[0].to[0]" in error or "group_wait" in error
    assert "Traceback" not in error


def test_a_silence_may_be_given_an_end_instead_of_a_duration(
    notified_db: str, alerts_yaml: Path, console_app: Callable[..., AppTest]
) -> None:
    end = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    app = console_app(notified_db, "admin", "alerts")
    app.text_area(key="silence_matchers").set_value("system=erp")
    app.text_input(key="silence_for").set_value(end.strftime("%Y-%m-%d %H:%M"))
    app.text_input(key="silence_reason").set_value("quarter close")
    app.button(key="create_silence").click().run()
    app.button(key="confirm_silence").click().run()

    with psycopg.connect(notified_db) as db:
        assert db.execute("SELECT ends_at FROM alert_silences").fetchone() == (end,)

    # The form was emptied by the creation: the next silence is typed anew.
    assert app.text_area(key="silence_matchers").value == ""
    app.text_area(key="silence_matchers").set_value("system=erp")
    app.text_input(key="silence_reason").set_value("quarter close")
    app.text_input(key="silence_for").set_value("soon").run()
    app.button(key="create_silence").click().run()
    assert "'soon' is neither a duration" in _texts(app)
    app.text_input(key="silence_for").set_value("2020-01-01 00:00").run()
    app.button(key="create_silence").click().run()
    assert "a silence must end after it starts (now)" in _texts(app)  # before confirming
    assert "confirm_silence" not in [button.key for button in app.button]


def test_the_page_and_the_test_send_read_the_role_from_the_database(
    notified_db: str,
    alerts_yaml: Path,
    hook: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    console_app: Callable[..., AppTest],
) -> None:
    # The session claims finance_ops, the database says `cio` is a viewer: the page file
    # run directly, as if navigation had been bypassed, refuses.
    monkeypatch.setenv("DATABASE_URL", notified_db)
    st.cache_resource.clear()
    direct = AppTest.from_file(str(APP.parent / "app_pages" / "alerts.py"), default_timeout=60)
    direct.session_state["user"] = User(LOGINS["viewer"][0], "finance_ops", "Cio")
    direct.run()
    assert not direct.exception
    assert "needs the finance_ops role" in direct.error[0].value

    # An on-call engineer demoted while the confirmation is open sends nothing.
    app = console_app(notified_db, "oncall", "alerts")
    app.button(key="send_test").click().run()
    engine = create_db_engine(notified_db, Settings(database_url=None))
    set_role(engine, LOGINS["admin"][0], LOGINS["oncall"][0], "finance_ops")
    engine.dispose()
    before = len(hook.received)
    app.button(key="confirm_test").click().run()

    assert len(hook.received) == before
    assert "sending test notifications needs the oncall role" in _texts(app)
    with psycopg.connect(notified_db) as db:
        assert db.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'alert.test'"
        ).fetchone() == (0,)

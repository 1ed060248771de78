"""An assignment is told to its owner: an ownership rule assigns a new exception, and the
owner's own mailbox (a real SMTP server on loopback) receives the mail at the address the
users table holds when it is sent; each owner is told of their own assignments only, and
Slack names them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from alerts.load import InvalidAlertsConfig, parse_alerts_config
from alerts.run import Alerting
from queries.user_admin import set_profile
from tests.support.alerting import GROUP_WAIT, notifications, storm

OWNERS = [
    {"match": {"system": "erp"}, "owner": "fin"},
    {"match": {"system": "billing"}, "owner": "ops"},
]


def _config(port: int, **mail: Any) -> Any:
    channels: dict[str, Any] = {
        "owner-mail": {
            "type": "email",
            "smtp": f"127.0.0.1:{port}",
            "from": "q2c@example.com",
            "to_owner": True,
            **mail,
        },
        "ops-slack": {"type": "slack", "url_env": "SLACK_URL"},
    }
    return parse_alerts_config(
        {
            "console_url": "http://console.test:8501",
            "channels": channels,
            "owners": OWNERS,
            # No group_by: without grouping per owner, every assignment would be one mail.
            "routes": [{"match": {"event": "exception.assigned"}, "to": list(channels)}],
        }
    )


def _pass(db_url: str, config: Any, slack_url: str, now: datetime) -> None:
    alerting = Alerting(
        db_url,
        config,
        config.console_url,
        {"SLACK_URL": slack_url},
        rates=dict.fromkeys(config.channels, 1000.0),
    )
    try:
        alerting.run_once(now)
    finally:
        alerting.close()


@pytest.fixture
def failures(send, run_evaluation, engine: Engine, users) -> None:
    """Two new ERP failures (fin's, by the first rule) and one of billing (ops's)."""
    set_profile(engine, "ada", "fin", "Fiona Finance", "fiona@example.com")
    set_profile(engine, "ada", "ops", "Oscar Ops", "oscar@example.com")
    send(storm(2, first_seq=7_000_000, prefix="INV-OWN-E", system="erp"))
    send(storm(1, first_seq=7_100_000, prefix="INV-OWN-B", system="billing"))
    run_evaluation()


def test_each_owner_receives_their_own_assignments_at_their_address(
    failures, smtp_server, slack, engine: Engine, db: psycopg.Connection, db_url: str
) -> None:
    mailbox = smtp_server("plain")
    config = _config(mailbox.port)
    now = datetime.now(UTC)
    _pass(db_url, config, slack.url, now)  # assigns, files the assignments, waits
    # Read at delivery time: the address fin has when the mail goes, not when assigned.
    set_profile(engine, "ada", "fin", "Fiona Finance", "fiona.finance@example.com")
    _pass(db_url, config, slack.url, now + GROUP_WAIT)

    mails = {tuple(recipients): message for _, recipients, message in mailbox.messages}
    assert set(mails) == {("fiona.finance@example.com",), ("oscar@example.com",)}
    fiona = mails[("fiona.finance@example.com",)].get_body(("plain",)).get_content()
    oscar = mails[("oscar@example.com",)].get_body(("plain",)).get_content()
    assert "assigned to: Fiona Finance" in fiona and "owner: fin" in fiona
    assert "2 exceptions" in fiona and "system: erp" in fiona
    assert "assigned to: Oscar Ops" in oscar and "system: billing" in oscar
    assert "Fiona" not in oscar
    texts = sorted(body["text"] for body in slack.bodies())
    assert [text.startswith("[medium] Exception assigned: ") for text in texts] == [True] * 2
    assert "on billing — for Oscar Ops — " in texts[0]
    assert "on erp (2 occurrences) — for Fiona Finance — " in texts[1]
    sections = [body["blocks"][1]["text"]["text"] for body in slack.bodies()]
    assert sorted(s.splitlines()[0] for s in sections) == [
        "Assigned to *Fiona Finance*",
        "Assigned to *Oscar Ops*",
    ]
    logged = notifications(db)
    assert {row["group_key"]["owner"] for row in logged} == {"fin", "ops"}
    assert all(row["status"] == "delivered" for row in logged)


def test_an_owner_without_an_address_is_logged_and_the_rest_still_written_to(
    failures, smtp_server, slack, engine: Engine, db: psycopg.Connection, db_url: str
) -> None:
    set_profile(engine, "ada", "ops", "Oscar Ops", None)
    mailbox = smtp_server("plain")
    config = _config(mailbox.port, to=["finance@example.com"])
    now = datetime.now(UTC)
    _pass(db_url, config, slack.url, now)
    _pass(db_url, config, slack.url, now + GROUP_WAIT)

    recipients = sorted(tuple(rcpt) for _, rcpt, _ in mailbox.messages)
    assert recipients == [("finance@example.com",), ("finance@example.com", "fiona@example.com")]
    [ops] = [
        row
        for row in notifications(db)
        if row["channel"] == "owner-mail" and row["group_key"]["owner"] == "ops"
    ]
    assert ops["status"] == "delivered"
    assert ops["outcome"].endswith("for 1 recipient(s); owner ops has no e-mail address")


def test_an_owner_only_channel_with_nobody_to_write_to_fails_and_says_why(
    failures, smtp_server, slack, engine: Engine, db: psycopg.Connection, db_url: str
) -> None:
    set_profile(engine, "ada", "ops", "Oscar Ops", None)
    mailbox = smtp_server("plain")
    config = _config(mailbox.port)
    now = datetime.now(UTC)
    _pass(db_url, config, slack.url, now)
    _pass(db_url, config, slack.url, now + GROUP_WAIT)

    assert [rcpt for _, rcpt, _ in mailbox.messages] == [["fiona@example.com"]]
    [ops] = [
        row
        for row in notifications(db)
        if row["channel"] == "owner-mail" and row["group_key"]["owner"] == "ops"
    ]
    assert (ops["status"], ops["outcome"]) == (
        "failed",
        "nobody to send to: owner ops has no e-mail address",
    )


def test_an_email_channel_names_someone_to_write_to() -> None:
    mail = {"type": "email", "smtp": "127.0.0.1:2525", "from": "q2c@example.com"}

    with pytest.raises(InvalidAlertsConfig) as raised:
        parse_alerts_config({"channels": {"mail": mail}})

    assert "channels.mail" in str(raised.value)
    assert "give `to` (addresses), or `to_owner: true`, or both" in str(raised.value)

"""Email through a real SMTP server on loopback (aiosmtpd): plain to a local relay, STARTTLS
and TLS on a certificate made for the test, logins, and every way a server can say no."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.channel import Channel
from alerts.channels import open_channel
from alerts.load import parse_alerts_config
from tests.support.peers import free_port

LOGIN_ENV = {"Q2C_SMTP_USER": "q2c", "Q2C_SMTP_PASSWORD": "s3cret-pass"}
LOGIN_KEYS = {"username_env": "Q2C_SMTP_USER", "password_env": "Q2C_SMTP_PASSWORD"}


def mail_channel(port: int, environ: dict[str, str] | None = None, **keys: Any) -> Channel:
    settings = {
        "type": "email",
        "smtp": f"127.0.0.1:{port}",
        "from": "Q2C Console <q2c@example.com>",
        "to": ["finance@example.com", "controller@example.com"],
        "timeout": "5s",
        **keys,
    }
    config = parse_alerts_config({"channels": {"mail": settings}})
    return open_channel(config, "mail", "http://console.example.com", environ or {})


def test_mail_has_plain_text_and_html_parts_with_the_facts_and_the_link(smtp_server, alike) -> None:
    mailbox = smtp_server("plain")
    sent = alike(count=3)

    result = mail_channel(mailbox.port).send(sent)

    assert result.delivered, result.reason
    assert result.reason == f"127.0.0.1:{mailbox.port} accepted the message for 2 recipient(s)"
    [(sender, recipients, message)] = mailbox.messages
    assert sender == "q2c@example.com"
    assert recipients == ["finance@example.com", "controller@example.com"]
    assert message["Subject"] == sent.headline()
    assert "(3 occurrences)" in message["Subject"]
    assert message["Message-ID"] == f"<{sent.id}@example.com>"
    assert message["X-Q2C-Event"] == "exception.opened"
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Open in Q2C Console: http://console.example.com/exceptions?id=42" in plain
    assert "system: erp" in plain and "correlation ID: order-7781" in plain
    assert "<a href='http://console.example.com/exceptions?id=42'>Open in Q2C Console</a>" in html
    # Text from the failure is escaped, never markup.
    assert "tax code &lt;T9&gt; unknown" in html and "ACME GmbH &amp; Co. KG" in html


def test_starttls_with_a_login_against_a_server_that_requires_both(
    smtp_server, certificates, alike
) -> None:
    mailbox = smtp_server("starttls", login=True)
    _, ca_file = certificates

    channel = mail_channel(
        mailbox.port, LOGIN_ENV, security="starttls", ca_file=str(ca_file), **LOGIN_KEYS
    )
    result = channel.send(alike())

    assert result.delivered, result.reason
    assert mailbox.logins == ["q2c"]
    assert len(mailbox.messages) == 1


# aiosmtpd cannot tell that a connection TLS from its first byte is encrypted, and says so.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_tls_from_the_first_byte(smtp_server, certificates, alike) -> None:
    mailbox = smtp_server("tls", login=True)
    _, ca_file = certificates

    channel = mail_channel(
        mailbox.port, LOGIN_ENV, security="tls", ca_file=str(ca_file), **LOGIN_KEYS
    )
    result = channel.send(alike())

    assert result.delivered, result.reason
    assert mailbox.logins == ["q2c"]


def test_a_certificate_the_system_does_not_trust_is_refused(smtp_server, alike) -> None:
    mailbox = smtp_server("starttls")

    result = mail_channel(mailbox.port, security="starttls").send(alike())

    assert (result.delivered, result.retryable) == (False, False)
    assert result.reason.startswith("TLS certificate not trusted")
    assert mailbox.messages == []


def test_starttls_is_never_quietly_skipped(smtp_server, alike) -> None:
    mailbox = smtp_server("plain")

    result = mail_channel(mailbox.port, security="starttls").send(alike())

    assert (result.delivered, result.retryable) == (False, False)
    assert result.reason == (
        f"127.0.0.1:{mailbox.port} does not offer STARTTLS (set security: tls or none)"
    )
    assert mailbox.messages == []


def test_a_wrong_password_is_a_refused_login_and_not_shown(
    smtp_server, certificates, alike
) -> None:
    mailbox = smtp_server("starttls", login=True)
    _, ca_file = certificates
    wrong = {**LOGIN_ENV, "Q2C_SMTP_PASSWORD": "not-the-password"}

    channel = mail_channel(
        mailbox.port, wrong, security="starttls", ca_file=str(ca_file), **LOGIN_KEYS
    )
    result = channel.send(alike())

    assert (result.delivered, result.retryable) == (False, False)
    assert result.reason.startswith(f"127.0.0.1:{mailbox.port} refused the login: 535")
    assert "not-the-password" not in result.reason


def test_a_missing_password_sends_nothing(smtp_server, alike) -> None:
    mailbox = smtp_server("plain")

    channel = mail_channel(mailbox.port, {"Q2C_SMTP_USER": "q2c"}, **LOGIN_KEYS)
    result = channel.send(alike())

    assert (result.delivered, result.reason) == (False, "$Q2C_SMTP_PASSWORD is not set")
    assert mailbox.messages == []


def test_refused_recipients_permanent_or_for_now(smtp_server, alike) -> None:
    mailbox = smtp_server("plain")

    permanent = mail_channel(mailbox.port, to=["nobody@example.com"]).send(alike())
    for_now = mail_channel(mailbox.port, to=["later@example.com"]).send(alike())
    partly = mail_channel(mailbox.port, to=["finance@example.com", "nobody@example.com"]).send(
        alike()
    )

    assert (permanent.delivered, permanent.retryable) == (False, False)
    assert "nobody@example.com (550 5.1.1 No such user)" in permanent.reason
    assert (for_now.delivered, for_now.retryable) == (False, True)
    assert partly.delivered
    assert partly.reason.endswith(
        "accepted the message for 1 recipient(s); "
        "refused nobody@example.com (550 5.1.1 No such user)"
    )
    assert [recipients for _, recipients, _ in mailbox.messages] == [["finance@example.com"]]


def test_a_server_that_is_not_there_may_be_tried_again(alike) -> None:
    port = free_port()

    result = mail_channel(port).send(alike())

    assert (result.delivered, result.retryable) == (False, True)
    assert result.reason == f"127.0.0.1:{port} refused the connection"


def test_the_issue_example_email_channel_delivers_to_a_local_relay(smtp_server, alike) -> None:
    mailbox = smtp_server("plain")
    example = yaml.safe_load(Path(__file__).with_name("issue_example.yaml").read_text())
    finance_mail = example["channels"]["finance-mail"]
    assert finance_mail["smtp"] == "127.0.0.1:2525"
    # The same channel, on a port that is free here.
    finance_mail["smtp"] = f"127.0.0.1:{mailbox.port}"
    config = parse_alerts_config({"channels": {"finance-mail": finance_mail}})

    result = open_channel(config, "finance-mail", "http://127.0.0.1:8501", {}).send(alike())

    assert result.delivered, result.reason
    assert mailbox.messages[0][1] == ["finance@example.com"]

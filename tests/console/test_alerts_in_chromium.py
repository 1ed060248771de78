"""The Alerts page in a real browser, as an on-call engineer walks it: the channels and a
notification log filled by a real alerting pass against loopback receivers, a test send
delivered, a silence created and expired; what finance ops and a viewer see instead.
Screenshots of each step go to /tmp/alerts-*.png, to be looked at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from playwright.sync_api import Locator, Page, expect

from alerts.load import parse_alerts_config
from demo.browser import console_process
from tests.support.alerting import ENVIRON, Receiver, alerting, receiver
from tests.support.console import LOGINS
from tests.support.peers import free_port

SHOTS = Path("/tmp")
# The console scrolls inside its main pane, so a full-page screenshot is the viewport: one
# tall enough shows the whole page.
TALL = {"width": 1400, "height": 2400}


def _alerts(hook: str, pager: str) -> dict[str, Any]:
    return {
        "console_url": "http://console.test:8501",
        "channels": {
            "ops-hook": {"type": "webhook", "url": hook, "secret_env": "HOOK_SECRET"},
            "pager": {"type": "pagerduty", "url": pager, "routing_key_env": "PD_KEY"},
        },
        "owners": [{"match": {"kind": "dead_letter"}, "owner": "oncall"}],
        "routes": [
            {
                "match": {"event": "exception.opened"},
                "to": ["ops-hook", "pager"],
                "group_by": ["fingerprint"],
            }
        ],
    }


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as got:
        yield got


@pytest.fixture
def pager() -> Iterator[Receiver]:
    """A PagerDuty that refuses every event (a wrong routing key): failures in the log."""
    refusal = (400, {"status": "invalid event", "errors": ["'routing_key' is invalid"]})
    with receiver(lambda request: refusal) as got:
        yield got


@pytest.fixture
def console_url(
    console_db: str,
    hook: Receiver,
    pager: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The console database after a real alerting pass (its exceptions told to the
    receivers), and the console serving it with that alerts.yaml and the channels' secrets."""
    settings = _alerts(hook.url, pager.url)
    runner = alerting(console_db, parse_alerts_config(settings))
    try:
        runner.run_once()
        runner.run_once(datetime.now(UTC) + timedelta(minutes=1))  # past group_wait
    finally:
        runner.close()
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(settings))
    for name, value in ENVIRON.items():  # inherited by the console process
        monkeypatch.setenv(name, value)
    environment = {"Q2C_REPLAY_ALLOWED_HOSTS": "127.0.0.1", "Q2C_ALERTS_CONFIG": str(path)}
    with console_process(console_db, free_port(), tmp_path / "console", environment) as url:
        yield url


def _open_alerts(page: Page, url: str, role: str) -> None:
    page.set_viewport_size(TALL)
    user, password = LOGINS[role]
    page.goto(url)
    page.get_by_label("User name").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Quote-to-cash overview")).to_be_visible()
    page.get_by_role("link", name="Alerts", exact=True).click()
    expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Notification log")).to_be_visible()
    # Drawn to its last widget, not half skeletons, before anyone looks at it.
    expect(page.get_by_role("combobox", name="Status")).to_be_visible()
    expect(page.get_by_text("Show ended silences too")).to_be_visible()


def _open_expander(page: Page, label: str, inside: Locator) -> None:
    """Open the expander `label` until `inside` shows: a click that lands while the page
    is still redrawing after the last action may be lost with the old element."""
    for _ in range(5):
        page.locator("[data-testid='stExpander'] summary", has_text=label).click()
        try:
            expect(inside).to_be_visible(timeout=3_000)
            return
        except AssertionError:
            continue
    raise AssertionError(f"the expander {label!r} did not open")


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"alerts-{name}.png"), full_page=True)


def _logged(console_db: str) -> dict[str, int]:
    with psycopg.connect(console_db) as conn:
        rows = conn.execute(
            "SELECT channel || ' ' || status, count(*) FROM alert_notifications GROUP BY 1"
        ).fetchall()
    return dict(rows)


def test_on_call_sees_the_log_sends_a_test_and_silences_then_expires(
    page: Page, console_url: str, console_db: str, hook: Receiver
) -> None:
    logged = _logged(console_db)
    total = sum(logged.values())
    assert logged.get("ops-hook delivered") and logged.get("pager failed"), logged

    _open_alerts(page, console_url, "oncall")
    expect(page.get_by_text(f"Showing 1 to {total} of {total}, newest first")).to_be_visible()
    channels = page.get_by_test_id("stDataFrame").first
    expect(channels).to_be_visible()
    expect(page.get_by_role("button", name="Send test…")).to_be_visible()
    _shot(page, "oncall")

    before = len(hook.received)
    page.get_by_role("button", name="Send test…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Send a test notification through")).to_be_visible()
    dialog.get_by_role("button", name="Send test", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Test to ops-hook delivered: "))).to_be_visible()
    assert len(hook.received) == before + 1
    assert hook.received[-1].body["type"] == "q2c.test"
    _shot(page, "test-sent")

    matchers = page.get_by_role("textbox", name=re.compile(r"^Matchers, one key=value a line"))
    _open_expander(page, "Create a silence", matchers)
    matchers.fill("system=erp")
    page.get_by_role("textbox", name=re.compile(r"^For \(30m, 2h, 1d\)")).fill("2h")
    page.get_by_role("textbox", name="Reason (goes into the audit trail)").fill(
        "ERP upgrade tonight"
    )
    page.get_by_role("button", name="Create silence…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Silence system=erp until")).to_be_visible()
    _shot(page, "silence-confirm")
    dialog.get_by_role("button", name="Create silence", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Silence 1 created, until "))).to_be_visible()
    expect(matchers).to_have_value("")  # emptied: a second click creates no second one
    _shot(page, "silence-created")

    expect(page.get_by_role("combobox", name="Silence to expire")).to_have_value(
        re.compile(r"^1 · system=erp until .* UTC · ERP upgrade tonight$")
    )
    page.get_by_role("button", name="Expire…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("End silence 1 now?")).to_be_visible()
    dialog.get_by_role("button", name="Expire", exact=True).click()
    expect(page.get_by_text("Silence 1 expired")).to_be_visible()
    expect(page.get_by_role("button", name="Expire…")).to_have_count(0)  # nothing to expire
    _shot(page, "silence-expired")

    with psycopg.connect(console_db) as conn:
        silences = conn.execute(
            "SELECT matchers, reason, author, expired_by FROM alert_silences"
        ).fetchall()
        audited = conn.execute(
            "SELECT action FROM audit_log WHERE action IN ('alert.test', 'silence.create', "
            "'silence.expire') ORDER BY id"
        ).fetchall()
    assert silences == [({"system": ["erp"]}, "ERP upgrade tonight", "oncall", "oncall")]
    assert [a for (a,) in audited] == ["alert.test", "silence.create", "silence.expire"]


def test_finance_sees_the_log_but_no_silence_form(
    page: Page, console_url: str, console_db: str
) -> None:
    total = sum(_logged(console_db).values())

    _open_alerts(page, console_url, "finance_ops")

    expect(page.get_by_text(f"Showing 1 to {total} of {total}, newest first")).to_be_visible()
    expect(
        page.get_by_text("Creating and expiring silences needs the oncall role or higher.")
    ).to_be_visible()
    expect(
        page.get_by_text("Sending a test notification needs the oncall role or higher.")
    ).to_be_visible()
    expect(page.get_by_text("Create a silence")).to_have_count(0)
    expect(page.get_by_role("button", name="Send test…")).to_have_count(0)
    _shot(page, "finance")


def test_a_viewer_is_refused_the_alerts_page_with_a_message(page: Page, console_url: str) -> None:
    page.set_viewport_size(TALL)
    user, password = LOGINS["viewer"]
    page.goto(f"{console_url}/alerts")
    page.get_by_label("User name").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()

    expect(
        page.get_by_text(
            "You cannot open this page: viewing alerting and the notification log needs the "
            f"finance_ops role or higher; {user} is viewer."
        )
    ).to_be_visible()
    expect(page.get_by_role("link", name="Alerts", exact=True)).to_have_count(0)  # not offered
    expect(page.get_by_role("heading", name="Notification log")).to_have_count(0)
    _shot(page, "viewer")

"""In a real browser: finance ops assigns an exception, on-call replays a dead letter, and
the database and the audit trail change exactly once each."""

from __future__ import annotations

import psycopg
from playwright.sync_api import Page, expect

from tests.console.conftest import LOGINS

HEADER_HEIGHT = 35  # px, Streamlit's data grid header
ROW_HEIGHT = 35  # px, one grid row
CHECKBOX_X = 26  # px from the grid's left edge to the select checkbox


def _sign_in(page: Page, url: str, role: str) -> None:
    user, password = LOGINS[role]
    page.goto(url)
    page.get_by_label("User name").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Quote-to-cash overview")).to_be_visible()


def _tick_first_row(page: Page, editor_key: str, selected_text: str) -> None:
    """Tick the select checkbox of a data editor's first row (a canvas grid: clicked by
    position), until the page confirms the selection."""
    grid = page.locator(f".st-key-{editor_key} [data-testid='stDataFrameResizable']")
    expect(grid).to_be_visible()
    for _ in range(5):  # the canvas may not take clicks until it has drawn its rows
        box = grid.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + CHECKBOX_X, box["y"] + HEADER_HEIGHT + ROW_HEIGHT / 2)
        try:
            expect(page.get_by_text(selected_text)).to_be_visible(timeout=3_000)
            return
        except AssertionError:
            continue
    raise AssertionError(f"could not select a row of {editor_key}")


def test_finance_assigns_and_on_call_replays_exactly_once(
    page: Page, console_url: str, console_db: str
) -> None:
    _sign_in(page, console_url, "finance_ops")
    page.get_by_role("link", name="Exceptions").click()
    expect(page.get_by_role("heading", name="Exceptions")).to_be_visible()
    _tick_first_row(page, "exceptions_editor", "Act on 1 selected")
    page.get_by_role("button", name="Assign", exact=True).click()
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("assign: 1 exception(s)")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    _sign_in(page, console_url, "oncall")
    page.get_by_role("link", name="Dead letters & replays").click()
    expect(page.get_by_role("heading", name="Dead letters & replays")).to_be_visible()
    _tick_first_row(page, "dead_letters_editor", "Replay 1 selected")
    page.get_by_role("button", name="Replay 1 selected").click()
    page.get_by_role("button", name="Replay", exact=True).click()
    expect(page.get_by_text("Replays: 1 queued")).to_be_visible()

    with psycopg.connect(console_db) as conn:
        assigned = conn.execute(
            "SELECT owner, status FROM exceptions WHERE owner IS NOT NULL"
        ).fetchall()
        events = conn.execute(
            "SELECT actor, action FROM exception_events WHERE actor <> 'system' ORDER BY id"
        ).fetchall()
        replays = conn.execute("SELECT requested_by, status FROM replays").fetchall()
    assert assigned == [("admin", "assigned")]
    assert events == [("finance", "assigned"), ("oncall", "replay_requested")]
    assert replays == [("oncall", "pending")]

"""In a real browser: finance ops assigns an exception, on-call replays a dead letter, and
the database and the audit trail change exactly once each."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator

import httpx
import psycopg
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from playwright.sync_api import Page, expect

from q2c.database import create_db_engine
from q2c.settings import Settings
from q2c.vocabulary import OPEN_STATUSES
from queries.exceptions import close_exceptions
from queries.user_admin import reset_password
from tests.support.console import LOGINS
from tests.support.otlp import (
    BASE_NS,
    NS,
    dead_letter_record,
    logs_request,
    stage_span,
    traces_request,
)
from tests.support.scenario import PROTOBUF
from tests.support.services import running_collector

HEADER_HEIGHT = 35  # px, Streamlit's data grid header
ROW_HEIGHT = 35  # px, one grid row
CHECKBOX_X = 26  # px from the grid's left edge to the select checkbox


def _sign_in(page: Page, url: str, role: str) -> None:
    _sign_in_at(page, url, role)
    expect(page.get_by_role("heading", name="Quote-to-cash overview")).to_be_visible()


def _sign_in_at(page: Page, url: str, role: str) -> None:
    """Open `url` signed out and sign in there."""
    user, password = LOGINS[role]
    page.goto(url)
    page.get_by_label("User name").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _tick_first_row(page: Page, editor_key: str, selected_text: str) -> None:
    """Tick the select checkbox of a data editor's first row."""
    _tick_row(page, editor_key, 1, selected_text)


def _tick_row(page: Page, editor_key: str, row: int, selected_text: str) -> None:
    """Tick the select checkbox of a data editor's `row`th row (a canvas grid: clicked by
    position), until the page confirms the selection."""
    grid = page.locator(f".st-key-{editor_key} [data-testid='stDataFrameResizable']")
    expect(grid).to_be_visible()
    for _ in range(5):  # the canvas may not take clicks until it has drawn its rows
        box = grid.bounding_box()
        assert box is not None
        y = box["y"] + HEADER_HEIGHT + ROW_HEIGHT * (row - 0.5)
        page.mouse.click(box["x"] + CHECKBOX_X, y)
        try:
            expect(page.get_by_text(selected_text)).to_be_visible(timeout=3_000)
            return
        except AssertionError:
            continue
    raise AssertionError(f"could not select row {row} of {editor_key}")


@contextlib.contextmanager
def _live_failures(database_url: str) -> Iterator[Callable[[], int]]:
    """New failures arriving through a real collector while the test runs (one request
    every 0.2 s, at most 300); yields how many have been accepted so far."""
    sent = [0]
    stop = threading.Event()
    with running_collector(Settings(database_url=None), database_url) as url:

        def send() -> None:
            for n in range(300):
                span = stage_span(
                    f"INV-LIVE-{n}",
                    "invoice_posting",
                    "invoice_recorded",
                    "erp",
                    at_s=3000 + n,
                    seq=500_000 + 10 * n,
                    error=f"posting {n} failed",
                )
                body = traces_request(span).SerializeToString()
                response = httpx.post(url + "/v1/traces", content=body, headers=PROTOBUF)
                assert response.status_code == 200
                sent[0] += 1
                if stop.wait(0.2):
                    return

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        try:
            yield lambda: sent[0]
        finally:
            stop.set()
            thread.join(30)


def _listed(page: Page) -> int:
    """How many exceptions the list says match."""
    caption = page.get_by_text(re.compile(r"Showing 1 to [\d,]+ of [\d,]+ matching"))
    return int(re.search(r"of ([\d,]+) matching", caption.inner_text())[1].replace(",", ""))


def _refresh_until_more_than(page: Page, count: int) -> None:
    """Interact (commit a reason) until the list shows more than `count` exceptions: the
    page re-reads its data on a rerun once its short cache has expired."""
    reason = page.get_by_role("textbox", name="Reason (to resolve, ignore or reopen)")
    for attempt in range(40):
        reason.fill(f"duplicate of INC-{attempt}")
        reason.press("Enter")
        try:
            expect(page.get_by_text(re.compile(r"of [\d,]+ matching"))).not_to_have_text(
                re.compile(rf"of {count} matching"), timeout=1_000
            )
            if _listed(page) > count:
                return
        except AssertionError:
            continue
    raise AssertionError(f"the list never showed more than {count} exceptions")


def _asked_ids(page: Page, pattern: str) -> list[int]:
    """The exception ids a confirmation dialog names after `pattern` ("Resolve 3
    exceptions?")."""
    text = page.get_by_role("dialog").inner_text()
    found = re.search(re.escape(pattern) + r"\s*([\d, ]+)", text)
    assert found, text
    return [int(i) for i in found[1].split(",")]


def test_finance_assigns_and_on_call_replays_exactly_once(
    page: Page, console_url: str, console_db: str
) -> None:
    _sign_in(page, console_url, "finance_ops")
    page.get_by_role("link", name="Exceptions", exact=True).click()
    expect(page.get_by_role("heading", name="Exceptions")).to_be_visible()
    _tick_first_row(page, "exceptions_editor", "Act on 1 selected")
    page.get_by_role("button", name="Assign", exact=True).click()
    expect(page.get_by_text("Assign 1 exception?")).to_be_visible()  # asked, not done
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("assign: 1 exception(s)")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()  # signed out first
    _sign_in(page, console_url, "oncall")
    page.get_by_role("link", name="Dead letters & replays", exact=True).click()
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
    assert assigned == [("finance", "assigned")]  # "Assign to" offers yourself first
    assert events == [("finance", "assigned"), ("oncall", "replay_requested")]
    assert replays == [("oncall", "pending")]


def test_one_click_adds_a_comment_clears_the_box_and_history_shows_it(
    page: Page, console_url: str, console_db: str
) -> None:
    _sign_in(page, console_url, "finance_ops")
    page.get_by_role("link", name="Exceptions", exact=True).click()
    expect(page.get_by_role("heading", name="Exceptions")).to_be_visible()
    box = page.get_by_role("textbox", name="Comment")
    box.fill("calling the ERP team about the *closed* period")  # typed, not yet committed

    page.get_by_role("button", name="Add comment").click()  # once

    expect(page.get_by_text("comment added")).to_be_visible()
    expect(box).to_have_value("")
    history = page.get_by_test_id("stText")  # what people wrote, shown as plain text
    expect(history.get_by_text("calling the ERP team about the *closed* period")).to_be_visible()
    expect(page.get_by_text("finance commented")).to_be_visible()
    with psycopg.connect(console_db) as conn:
        comments = conn.execute(
            "SELECT actor, comment FROM exception_events WHERE action = 'commented'"
        ).fetchall()
    assert comments == [("finance", "calling the ERP team about the *closed* period")]


def test_the_list_shows_a_letter_s_new_status_without_a_click(
    page: Page, console_url: str, console_db: str
) -> None:
    _sign_in(page, console_url, "oncall")
    page.goto(f"{console_url}/dead_letters?status=%28any%29")  # replayed letters stay listed
    first_status = page.locator(".st-key-dead_letters_editor [data-testid='glide-cell-7-0']")
    expect(first_status).to_have_text("dead")
    page.get_by_role("button", name="Replay with this payload").click()  # the first letter's
    page.get_by_role("button", name="Replay", exact=True).click()
    expect(page.get_by_text("Replays: 1 queued")).to_be_visible()
    expect(first_status).to_have_text("replay_pending")

    with psycopg.connect(console_db) as conn:  # as the dispatcher does on delivery
        conn.execute("UPDATE replays SET status = 'succeeded', finished_at = now()")
        conn.execute("UPDATE dead_letters SET status = 'replayed' WHERE status = 'replay_pending'")

    expect(first_status).to_have_text("replayed", timeout=20_000)


def test_the_payload_pane_follows_a_replay_sent_in_the_background(
    page: Page, console_url: str, console_db: str
) -> None:
    _sign_in(page, console_url, "oncall")
    page.get_by_role("link", name="Dead letters & replays", exact=True).click()
    page.get_by_role("button", name="Replay with this payload").click()
    page.get_by_role("button", name="Replay", exact=True).click()
    expect(page.get_by_text("Replays: 1 queued")).to_be_visible()
    expect(page.get_by_text(re.compile(r"· status replay_pending"))).to_be_visible()

    with psycopg.connect(console_db) as conn:  # as the dispatcher does on delivery
        conn.execute("UPDATE replays SET status = 'succeeded', finished_at = now()")
        conn.execute("UPDATE dead_letters SET status = 'replayed' WHERE status = 'replay_pending'")

    # No click: the live section, which sees the replay move on, redraws the pane too.
    expect(page.get_by_text(re.compile(r"· status replayed"))).to_be_visible(timeout=20_000)
    expect(page.get_by_text("is not in this list (filters or status changed)")).to_be_visible()


def test_one_click_replays_an_edited_payload(page: Page, console_url: str, console_db: str) -> None:
    _sign_in(page, console_url, "oncall")
    page.get_by_role("link", name="Dead letters & replays", exact=True).click()
    expect(page.get_by_role("heading", name="Dead letters & replays")).to_be_visible()
    editor = page.get_by_role("textbox", name="Edit the payload before replaying")
    expect(editor).not_to_have_value("")
    edited = '{"corrected": true}'
    editor.fill(edited)  # typed, not yet committed

    page.get_by_role("button", name="Replay with this payload").click()  # once
    expect(page.get_by_text("with the edited payload: the changes")).to_be_visible()
    diff = page.get_by_role("dialog").get_by_test_id("stCode").inner_text()
    assert '+{"corrected": true}' in diff and '-  "invoice": "INV-11"' in diff
    page.get_by_role("button", name="Replay", exact=True).click()

    expect(page.get_by_text("Replays: 1 queued")).to_be_visible()
    expect(editor).not_to_have_value(edited)  # the next click does not send it again
    with psycopg.connect(console_db) as conn:
        replays = conn.execute("SELECT requested_by, payload_override FROM replays").fetchall()
    assert replays == [("oncall", edited)]


def _more_dead_letters(database_url: str, count: int) -> None:
    """`count` more dead letters, delivered through a real collector."""
    records = [
        dead_letter_record(
            f"INV-DL{n}",
            at_s=40 + n,
            target=f"http://127.0.0.1:9/erp/invoices/{n}",
            payload=f'{{"invoice": "INV-DL{n}"}}',
        )
        for n in range(count)
    ]
    with running_collector(Settings(database_url=None), database_url) as url:
        body = logs_request(*records).SerializeToString()
        response = httpx.post(url + "/v1/logs", content=body, headers=PROTOBUF)
        assert response.status_code == 200


def test_on_call_discards_a_dead_letter_with_a_reason(
    page: Page, console_url: str, console_db: str
) -> None:
    _sign_in(page, console_url, "oncall")
    page.get_by_role("link", name="Dead letters & replays", exact=True).click()
    expect(page.get_by_role("heading", name="Dead letters & replays")).to_be_visible()
    _tick_first_row(page, "dead_letters_editor", "Discard 1 selected")
    page.get_by_role("textbox", name="Reason (to discard)").fill("posted by hand in the ERP")
    page.get_by_role("button", name="Discard 1 selected").click()
    expect(page.get_by_text("Discard 1 dead letter(s)?")).to_be_visible()  # asked, not done
    page.get_by_role("button", name="Discard", exact=True).click()

    expect(page.get_by_text("Discarded 1")).to_be_visible()
    with psycopg.connect(console_db) as conn:
        statuses = conn.execute("SELECT status FROM dead_letters").fetchall()
        events = conn.execute(
            "SELECT actor, comment FROM exception_events WHERE action = 'dead_letter_discarded'"
        ).fetchall()
    assert statuses == [("discarded",)]
    assert events == [("oncall", "posted by hand in the ERP")]


def _open_redrive(page: Page, console_url: str, console_db: str, letters: int) -> None:
    """`letters` more dead letters (INV-DL…), and on-call's redrive section open on them."""
    _more_dead_letters(console_db, letters)
    _sign_in(page, console_url, "oncall")
    page.get_by_role("link", name="Dead letters & replays", exact=True).click()
    page.get_by_role("textbox", name="Search (correlation ID, target, error)").fill("INV-DL")
    page.get_by_role("textbox", name="Search (correlation ID, target, error)").press("Enter")
    page.get_by_text("Redrive every dead letter matching the search").click()


def test_a_redrive_is_dry_run_rate_limited_shown_and_cancelled(
    page: Page, console_url: str, console_db: str
) -> None:
    _open_redrive(page, console_url, console_db, 5)
    page.get_by_label("Replays a second").fill("0.5")
    page.get_by_role("button", name="Dry run").click()
    expect(page.get_by_text("5 dead letter(s) match; 5 would be replayed")).to_be_visible()
    with psycopg.connect(console_db) as conn:
        assert conn.execute("SELECT count(*) FROM replays").fetchone() == (0,)  # a dry run

    page.get_by_role("button", name="Redrive…").click()
    expect(page.get_by_text("Replay 5 dead letter(s)")).to_be_visible()
    page.get_by_role("button", name="Start redrive").click()
    expect(page.get_by_text("5 replay(s) queued at 0.5 a second")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Redrive \d+ by oncall .*0 of 5 done"))).to_be_visible()
    page.get_by_role("button", name="Cancel").click()

    expect(page.get_by_text(re.compile(r"5 of 5 done · 5 cancelled"))).to_be_visible()
    # The whole page follows: its message, and the letters back in the list.
    expect(page.get_by_text(re.compile(r"Redrive \d+: 5 cancelled"))).to_be_visible()
    expect(page.get_by_text("5 replay(s) queued at 0.5 a second")).to_have_count(0)
    expect(page.get_by_role("button", name="Replay 0 selected")).to_be_visible()  # listed
    expect(page.get_by_text("No dead letters match.")).to_have_count(0)
    # The section stays open, as the message comes and goes: its dry run is read at once.
    page.get_by_role("button", name="Dry run").click()
    expect(page.get_by_text("5 dead letter(s) match; 5 would be replayed")).to_be_visible()
    with psycopg.connect(console_db) as conn:
        gaps = conn.execute(
            "SELECT extract(epoch FROM next_attempt_at - lag(next_attempt_at) OVER (ORDER BY id)),"
            " status FROM replays ORDER BY id"
        ).fetchall()
        letters = conn.execute("SELECT status, count(*) FROM dead_letters GROUP BY 1").fetchall()
    assert [float(gap) for gap, _ in gaps[1:]] == [2.0] * 4  # 0.5 a second
    assert {status for _, status in gaps} == {"cancelled"}
    assert letters == [("dead", 6)]


def test_the_letters_of_a_redrive_whose_replays_failed_are_back_in_the_list_unasked(
    page: Page, console_url: str, console_db: str
) -> None:
    _open_redrive(page, console_url, console_db, 3)
    page.get_by_role("button", name="Redrive…").click()
    page.get_by_role("button", name="Start redrive").click()
    expect(page.get_by_text("No dead letters match.")).to_be_visible()  # all under way

    with psycopg.connect(console_db) as conn:  # as the dispatcher does: each one refused
        conn.execute("UPDATE replays SET status = 'failed', finished_at = now()")
        conn.execute("UPDATE dead_letters SET status = 'dead' WHERE status = 'replay_pending'")

    expect(page.get_by_text(re.compile(r"3 of 3 done · 3 failed"))).to_be_visible()
    expect(page.get_by_role("button", name="Replay 0 selected")).to_be_visible()  # listed
    expect(page.get_by_text("No dead letters match.")).to_have_count(0)


def test_no_request_goes_anywhere_but_the_console(page: Page, console_url: str) -> None:
    elsewhere: list[str] = []

    def note(request) -> None:
        if not request.url.startswith((console_url, "data:", "blob:")):
            elsewhere.append(request.url)

    page.on("request", note)
    _sign_in(page, console_url, "admin")
    for link, heading in (
        ("Exceptions", "Exceptions"),
        ("Dead letters & replays", "Dead letters & replays"),
        ("Trace explorer", "Trace explorer"),
        ("Quote-to-cash stages", "Quote-to-cash stages"),
        ("Users & policies", "Users & policies"),
    ):
        page.get_by_role("link", name=link, exact=True).click()
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
    page.wait_for_load_state("networkidle")

    assert elsewhere == []


def test_the_detail_tiles_show_their_values_whole(
    page: Page, console_url: str, console_db: str
) -> None:
    with psycopg.connect(console_db, autocommit=True) as conn:  # values as long as real ones
        conn.execute(
            "UPDATE exceptions SET invoice_id = 'INV-2026-000000922', amount = 13138.08, "
            "currency = 'EUR', customer_id = 'CUST-000000000042', legal_entity = 'DE01'"
        )
    _sign_in(page, console_url, "finance_ops")
    page.get_by_role("link", name="Exceptions", exact=True).click()
    values = page.locator("[data-testid='stMetricValue']")
    expect(values).to_have_count(6)  # every tile drawn before they are measured
    expect(values.last).to_be_visible()

    cut = values.evaluate_all(
        "els => els.flatMap(e => [e, ...e.querySelectorAll('*')])"
        ".filter(e => e.scrollWidth > e.clientWidth).map(e => e.innerText)"
    )

    assert cut == []


def test_ticks_survive_live_data_and_the_action_changes_exactly_the_ticked(
    page: Page, console_url: str, console_db: str
) -> None:
    with _live_failures(console_db) as accepted:
        _sign_in(page, console_url, "finance_ops")
        page.get_by_role("link", name="Exceptions", exact=True).click()
        expect(page.get_by_role("heading", name="Exceptions")).to_be_visible()
        before = _listed(page)
        for row in (1, 2, 3):
            _tick_row(page, "exceptions_editor", row, f"Act on {row} selected")

        _refresh_until_more_than(page, before)  # new exceptions arrived and are listed
        expect(page.get_by_text("Act on 3 selected")).to_be_visible()
        page.get_by_role("button", name="Resolve").click()
        ticked = _asked_ids(page, "Resolve 3 exceptions?")
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_text("resolved: 3 exception(s)")).to_be_visible()
        assert accepted() > 0

    with psycopg.connect(console_db) as conn:
        resolved = conn.execute(
            "SELECT id FROM exceptions WHERE status = 'resolved' ORDER BY id"
        ).fetchall()
        events = conn.execute(
            "SELECT exception_id, actor FROM exception_events WHERE action = 'resolved' "
            "ORDER BY exception_id"
        ).fetchall()
    assert [i for (i,) in resolved] == sorted(ticked)
    assert events == [(i, "finance") for i in sorted(ticked)]


def test_each_tick_counts_at_the_first_click(page: Page, console_url: str) -> None:
    _sign_in(page, console_url, "finance_ops")
    page.get_by_role("link", name="Exceptions", exact=True).click()
    _tick_row(page, "exceptions_editor", 1, "Act on 1 selected")  # the grid takes clicks
    grid = page.locator(".st-key-exceptions_editor [data-testid='stDataFrameResizable']")
    for row in (2, 3):  # one click each, as a person clicks
        box = grid.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + CHECKBOX_X, box["y"] + HEADER_HEIGHT + ROW_HEIGHT * (row - 0.5))
        expect(page.get_by_text(f"Act on {row} selected")).to_be_visible()


def test_ticks_acted_on_do_not_come_back_with_the_next_tick(
    page: Page, console_url: str, console_db: str
) -> None:
    _sign_in(page, console_url, "finance_ops")
    page.goto(f"{console_url}/exceptions?order=oldest+first")  # the rows keep their places
    _tick_row(page, "exceptions_editor", 1, "Act on 1 selected")
    _tick_row(page, "exceptions_editor", 2, "Act on 2 selected")
    page.get_by_role("button", name="Start work").click()
    started = _asked_ids(page, "Start work on 2 exceptions?")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("start work: 2 exception(s)")).to_be_visible()
    expect(page.get_by_text("Act on 0 selected")).to_be_visible()
    tick_boxes = page.locator(".st-key-exceptions_editor [data-testid^='glide-cell-0-']")
    expect(tick_boxes.first).to_have_text("false")  # none drawn ticked any more
    assert set(tick_boxes.all_inner_texts()) == {"false"}

    _tick_row(page, "exceptions_editor", 3, "Act on 1 selected")  # this one alone

    page.get_by_role("button", name="Resolve").click()
    page.get_by_role("textbox", name="Reason (to resolve, ignore or reopen)").fill("fixed")
    page.get_by_role("button", name="Resolve").click()
    [third] = _asked_ids(page, "Resolve 1 exception?")
    assert third not in started


def test_a_ticked_exception_someone_else_closed_is_named_and_left_alone(
    page: Page, console_url: str, console_db: str, engine
) -> None:
    _sign_in(page, console_url, "finance_ops")
    page.get_by_role("link", name="Exceptions", exact=True).click()
    expect(page.get_by_role("heading", name="Exceptions")).to_be_visible()
    _tick_row(page, "exceptions_editor", 1, "Act on 1 selected")
    _tick_row(page, "exceptions_editor", 2, "Act on 2 selected")
    page.get_by_role("button", name="Ignore").click()
    page.get_by_role("textbox", name="Reason (to resolve, ignore or reopen)").fill("known issue")
    page.get_by_role("button", name="Ignore").click()
    first, second = _asked_ids(page, "Ignore 2 exceptions?")
    # Not now (the dialog's close button): meanwhile someone else resolves the first.
    page.get_by_role("dialog").get_by_role("button", name="Close").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    # The list still shows open exceptions only (else the resolved one still matches it).
    shown = page.locator(".st-key-f_status [title]").evaluate_all(
        "tags => tags.map(tag => tag.getAttribute('title'))"
    )
    assert set(OPEN_STATUSES) <= set(shown), shown
    close_exceptions(engine, LOGINS["admin"][0], [first], "resolved", "fixed at the source")

    page.get_by_role("button", name="Ignore").click()

    expect(page.get_by_text(f"Left alone: {first} no longer match")).to_be_visible()
    assert _asked_ids(page, "Ignore 1 exception?") == [second]
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("ignored: 1 exception(s)")).to_be_visible()
    with psycopg.connect(console_db) as conn:
        statuses = dict(
            conn.execute(
                "SELECT id, status FROM exceptions WHERE id = ANY (%s)", ([first, second],)
            ).fetchall()
        )
    assert statuses == {first: "resolved", second: "ignored"}


def test_a_group_action_resolves_every_open_exception_of_the_group_as_data_arrives(
    page: Page, console_url: str, console_db: str
) -> None:
    with _live_failures(console_db) as accepted:
        _sign_in_at(page, f"{console_url}/exceptions?grouped=yes&q=posting", "finance_ops")
        expect(page.get_by_role("heading", name="Exceptions")).to_be_visible()
        # The live failures ("posting N failed") are one fingerprint: the biggest group.
        expect(page.get_by_role("combobox", name="Group")).to_have_value(
            re.compile(r"^posting .* exception\(s\)$")
        )
        page.get_by_role("textbox", name="Reason (to resolve or ignore the group)").fill(
            "ERP period reopened"
        )
        page.get_by_role("button", name="Resolve all").click()
        asked = page.get_by_role("dialog").inner_text()
        count = int(re.search(r"Resolve ([\d,]+) exceptions?\?", asked)[1].replace(",", ""))
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_text(f"resolved: {count} exception(s)")).to_be_visible()
        assert accepted() > 0

    with psycopg.connect(console_db) as conn:
        resolved = conn.execute(
            "SELECT e.fingerprint, ev.actor, ev.comment FROM exceptions e JOIN exception_events "
            "ev ON ev.exception_id = e.id AND ev.action = 'resolved' WHERE e.status = 'resolved'"
        ).fetchall()
    assert len(resolved) == count and count > 1
    assert {row[1:] for row in resolved} == {("finance", "ERP period reopened")}
    assert len({row[0] for row in resolved}) == 1  # one group, nothing else


def test_a_pasted_link_leads_to_its_object_after_sign_in(
    page: Page, console_url: str, console_db: str
) -> None:
    with psycopg.connect(console_db) as conn:
        (last,) = conn.execute("SELECT max(id) FROM exceptions").fetchone()

    _sign_in_at(page, f"{console_url}/exceptions?id={last}", "finance_ops")

    expect(page.get_by_role("heading", name="Exceptions")).to_be_visible()
    expect(page.get_by_role("combobox", name="Exception")).to_have_value(re.compile(rf"^{last} · "))
    assert page.url.endswith(f"/exceptions?id={last}")

    page.goto(f"{console_url}/explorer?q=inv-11")  # a lookup's own address, still signed in
    expect(page.get_by_role("heading", name="Trace explorer")).to_be_visible()
    expect(page.get_by_text("correlation INV-11")).to_be_visible()


def test_signing_in_at_any_page_s_address_keeps_the_sign_in_and_every_filter(
    page: Page, console_url: str
) -> None:
    _sign_in_at(page, f"{console_url}/audit", "admin")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    page.reload()  # the session cookie was written on the way there
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(page.get_by_label("Actor (user name)")).to_be_visible()  # the page, drawn whole
    expect(page.get_by_label("User name", exact=True)).to_have_count(0)  # no sign-in form

    page.context.clear_cookies()
    _sign_in_at(page, f"{console_url}/exceptions?impact=critical&impact=high", "finance_ops")
    expect(page.get_by_role("heading", name="Exceptions")).to_be_visible()
    expect(page).to_have_url(re.compile(r"impact=critical&impact=high"))


def test_a_page_the_role_may_not_open_names_the_role_it_needs(page: Page, console_url: str) -> None:
    _sign_in_at(page, f"{console_url}/admin", "viewer")

    expect(page.get_by_role("heading", name="Users & policies")).to_be_visible()
    expect(page.get_by_text("managing users needs the admin role or higher")).to_be_visible()
    expect(page.get_by_role("link", name="Users & policies")).to_have_count(0)  # not offered


def test_a_sign_in_survives_reloads_and_new_tabs_until_sign_out_or_a_role_change(
    page: Page, console_url: str, console_db: str
) -> None:
    _sign_in(page, console_url, "finance_ops")

    page.reload()
    expect(page.get_by_role("heading", name="Quote-to-cash overview")).to_be_visible()
    tab = page.context.new_page()  # a pasted link, in a new tab: no password asked
    tab.goto(f"{console_url}/exceptions")
    expect(tab.get_by_role("heading", name="Exceptions")).to_be_visible()

    tab.get_by_role("button", name="Sign out").click()
    expect(tab.get_by_role("button", name="Sign in")).to_be_visible()
    page.reload()  # signing out ended the sign-in in every tab
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()

    _sign_in(page, console_url, "finance_ops")
    with psycopg.connect(console_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE users SET role = 'viewer' WHERE username = %s", (LOGINS["finance_ops"][0],)
        )
        stored = conn.execute(
            "SELECT length(token_hash), closed_at IS NOT NULL FROM console_sessions ORDER BY id"
        ).fetchall()
    page.reload()  # a role change ends the sessions opened with the old role
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert stored == [(32, True), (32, False)]  # only hashes are kept


def _comments(database_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT actor, comment FROM exception_events WHERE action = 'commented' ORDER BY id"
        ).fetchall()
    return [(str(actor), str(comment)) for actor, comment in rows]


def _comment_refused(tab: Page, note: str) -> None:
    """Type `note` and click Add comment in `tab`, open since before its sign-in ended:
    the tab is signed out, says so, and the comment is not added."""
    tab.get_by_role("textbox", name="Comment").fill(note)
    tab.get_by_role("button", name="Add comment").click()
    expect(tab.get_by_text("What you last clicked was not done.")).to_be_visible()
    expect(tab.get_by_role("button", name="Sign in")).to_be_visible()


def test_an_open_tab_can_do_nothing_once_its_sign_in_has_ended(
    page: Page, console_url: str, console_db: str
) -> None:
    # Signing out in one tab ends the sign-in of every tab, at their next click.
    _sign_in(page, console_url, "finance_ops")
    tab = page.context.new_page()
    tab.goto(f"{console_url}/exceptions")
    expect(tab.get_by_role("heading", name="Exceptions")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()

    _comment_refused(tab, "typed after signing out elsewhere")
    expect(tab.get_by_text("signed out in another tab")).to_be_visible()
    # The sign-in form stands alone: no menu of the pages the ended sign-in could open.
    expect(tab.get_by_role("navigation", name="App pages")).to_have_count(0)
    expect(page.get_by_role("navigation", name="App pages")).to_have_count(0)

    # An admin's password reset ends the user's open sign-in as well.
    _sign_in_at(tab, f"{console_url}/exceptions", "finance_ops")
    expect(tab.get_by_role("heading", name="Exceptions")).to_be_visible()
    engine = create_db_engine(console_db, Settings(database_url=None))
    try:
        reset_password(engine, LOGINS["admin"][0], LOGINS["finance_ops"][0], "a-new-Passw0rd!")
    finally:
        engine.dispose()
    _comment_refused(tab, "typed after an admin reset the password")

    assert _comments(console_db) == []


def _send_nested_trace(collector_url: str) -> None:
    """Through the real OpenTelemetry SDK: billing posts invoice INV-WF-1 (an HTTP call with
    a database insert inside it, neither tagged with the transaction), and three hours later
    the ERP's batch fails to record it."""
    provider = TracerProvider(resource=Resource.create({"service.name": "billing-sync"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector_url}/v1/traces"))
    )
    tracer = provider.get_tracer("q2c.tests")
    start = BASE_NS - 3 * 3600 * NS  # so that the batch's hop, later, is still past
    invoice = {"q2c.correlation_id": "INV-WF-1", "q2c.process": "invoice_posting"}
    posted = {**invoice, "q2c.stage": "invoice_posted", "q2c.system": "billing"}
    with tracer.start_as_current_span("post invoice", attributes=posted, start_time=start) as root:
        with tracer.start_as_current_span(
            "POST /erp/invoices", start_time=start + NS // 10
        ) as call:
            insert = tracer.start_span("INSERT invoices", start_time=start + NS // 5)
            insert.end(end_time=start + NS // 5 + NS // 20)  # 50 ms
            call.end(end_time=start + NS)  # 900 ms
        root.end(end_time=start + 2 * NS)  # 2.0 s
    later = start + 3 * 3600 * NS
    recorded = {**invoice, "q2c.stage": "invoice_recorded", "q2c.system": "erp"}
    failing = tracer.start_span("record invoice", attributes=recorded, start_time=later)
    failing.set_status(Status(StatusCode.ERROR, "tax code T7 invalid for entity 42"))
    failing.end(end_time=later + 3 * NS // 10)  # 300 ms
    assert provider.force_flush(30_000)
    provider.shutdown()


def test_the_waterfall_shows_nested_spans_with_durations(
    page: Page, console_url: str, console_db: str
) -> None:
    with running_collector(Settings(database_url=None), console_db) as collector_url:
        _send_nested_trace(collector_url)
    with _live_failures(console_db):
        _sign_in_at(page, f"{console_url}/explorer?q=inv-wf-1", "finance_ops")
        expect(page.get_by_role("heading", name="Trace explorer")).to_be_visible()
        chart = page.locator(".js-plotly-plot")
        expect(chart).to_be_visible(timeout=30_000)  # the charting code loads on first use
        rows = chart.locator(".ytick text")
        expect(rows).to_have_count(4)
        # Row "N. label", the label indented four spaces a level (drawn as non-breaking).
        texts = [text.replace("\xa0", " ").strip() for text in rows.all_text_contents()]
        labels = [label for _, label in sorted(t.split(". ", 1) for t in texts)]
        assert labels == [
            "billing · post invoice",
            "    └ billing-sync · POST /erp/invoices",
            "        └ billing-sync · INSERT invoices",
            "erp · record invoice",
        ], labels
        assert chart.locator("text.bartext").all_text_contents() == [
            "2.0 s",
            "900 ms",
            "50 ms",
            "300 ms",
        ]
        gaps = [t.replace("\xa0", " ") for t in chart.locator(".annotation").all_text_contents()]
        assert gaps == ["⋯ 2 h 59 min idle"]  # 3 h after the start, 2 s after the post
        # It opens on the failed span; a click on another bar shows that one.
        expect(page.get_by_text("error: tax code T7 invalid for entity 42")).to_be_visible()
        box = chart.locator("g.point path").nth(1).bounding_box()  # the bars, in data order
        assert box is not None
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        expect(page.get_by_role("combobox", name="Span")).to_have_value(
            re.compile(r"POST /erp/invoices")
        )
        expect(page.get_by_text(re.compile(r"POST /erp/invoices · billing-sync"))).to_be_visible()


def test_an_added_user_leaves_the_form_in_the_browser_too(page: Page, console_url: str) -> None:
    _sign_in(page, console_url, "admin")
    page.get_by_role("link", name="Users & policies", exact=True).click()
    name = page.get_by_role("textbox", name="User name", exact=True)
    password = page.get_by_role("textbox", name="Initial password")
    name.fill("grace")
    password.fill("short")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_text("at least 10 characters")).to_be_visible()
    expect(name).to_have_value("grace")  # refused: kept, to correct

    password.fill("a-long-Passw0rd!")
    page.get_by_role("button", name="Add", exact=True).click()

    expect(page.get_by_text("added grace (viewer)")).to_be_visible()
    expect(name).to_have_value("")  # shown empty, not only emptied on the server
    expect(password).to_have_value("")


def _send_markdown_trace(collector_url: str) -> None:
    """A failing span whose name, status message and business key are written as Markdown:
    an image from elsewhere and a link that poses as the console's own message."""
    provider = TracerProvider(resource=Resource.create({"service.name": "billing-sync"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector_url}/v1/traces"))
    )
    attributes = {
        "q2c.correlation_id": "INV-MD-1",
        "q2c.process": "invoice_posting",
        "q2c.stage": "invoice_recorded",
        "q2c.system": "erp",
        "q2c.customer_id": "![c](http://127.0.0.1:9/customer.png)",
    }
    span = provider.get_tracer("q2c.tests").start_span(
        "![s](http://127.0.0.1:9/span.png)", attributes=attributes, start_time=BASE_NS
    )
    span.set_status(Status(StatusCode.ERROR, "[Session expired: sign in](http://127.0.0.1:9/p)"))
    span.end(end_time=BASE_NS + NS)
    assert provider.force_flush(30_000)
    provider.shutdown()


def test_text_from_telemetry_and_the_address_is_shown_as_written_never_as_markdown(
    page: Page, console_url: str, console_db: str
) -> None:
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith((console_url, "data:", "blob:"))
            else elsewhere.append(request.url)
        ),
    )
    with running_collector(Settings(database_url=None), console_db) as collector_url:
        _send_markdown_trace(collector_url)
    _sign_in_at(page, f"{console_url}/explorer?q=INV-MD-1", "finance_ops")
    expect(
        page.get_by_text("error: [Session expired: sign in](http://127.0.0.1:9/p)")
    ).to_be_visible()
    expect(page.get_by_text("customer ![c](http://127.0.0.1:9/customer.png)")).to_be_visible()
    page.goto(f"{console_url}/explorer?q=x [sign in again](http://127.0.0.1:9/q)")
    expect(page.get_by_text("No transaction has the key")).to_be_visible()
    expect(page.get_by_text("[sign in again](http://127.0.0.1:9/q)")).to_be_visible()

    # No link poses as something else: an address in the text may be linked, as itself.
    links = page.locator("a[href*='127.0.0.1:9']")
    shown = [
        (links.nth(i).get_attribute("href"), links.nth(i).inner_text())
        for i in range(links.count())
    ]
    assert all(href == text for href, text in shown), shown
    assert page.locator("img[src*='127.0.0.1:9']").count() == 0
    assert elsewhere == []

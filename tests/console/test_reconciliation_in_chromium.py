"""In a real browser: finance ops opens a break by its pasted address, sees the records
side by side, accepts the difference with a reason, and the database records it once;
screenshots of the page in /tmp/recon-*.png."""

from __future__ import annotations

import psycopg
from playwright.sync_api import Page, expect

from tests.support.console import LOGINS
from tests.support.reconciling import billing, erp


def test_finance_accepts_a_difference_from_a_pasted_link(
    page: Page, console_url: str, console_db: str, exports, reconcile
) -> None:
    exports(
        [billing("INV-1"), billing("INV-2"), billing("INV-3"), billing("INV-4"), billing("INV-4")],
        [erp("INV-1"), erp("INV-3", taxTotal=20.5, currencyCode="USD"), erp("INV-4")],
    )
    run_id = reconcile().run_id
    user, password = LOGINS["finance_ops"]
    address = f"{console_url}/reconciliation?break_run={run_id}&key=INV-3&type=mismatch:tax_amount"

    page.goto(address)
    page.get_by_label("User name").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Reconciliation", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="invoice INV-3 · mismatch:tax_amount")).to_be_visible()
    expect(page.get_by_text("currency, tax_amount differ between the sources")).to_be_visible()
    expect(page.get_by_role("link", name="Exception", exact=False).first).to_be_visible()
    expect(page.locator(".js-plotly-plot")).to_be_visible()  # the accuracy trend drawn
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    page.screenshot(path="/tmp/recon-page.png")
    page.get_by_test_id("stDataFrame").last.scroll_into_view_if_needed()
    page.screenshot(path="/tmp/recon-records.png")

    page.get_by_role("button", name="Accept difference").click()  # no reason yet
    # What came of the click shows where the person clicked, not at the top of the page.
    expect(page.get_by_text("accepting a difference needs a reason")).to_be_in_viewport()
    page.get_by_label("Reason (required)").fill("ERP rounds tax per line")
    page.get_by_role("button", name="Accept difference").click()

    expect(page.get_by_text("Accepted mismatch:tax_amount of INV-3")).to_be_in_viewport()
    expect(page.get_by_text("Accepted as a known difference by finance")).to_be_visible()
    expect(page.get_by_role("button", name="Accept difference")).to_have_count(0)
    page.screenshot(path="/tmp/recon-accepted.png")
    with psycopg.connect(console_db) as conn:
        assert conn.execute(
            "SELECT key, break_type, reason, accepted_by FROM reconciliation_acceptances"
        ).fetchall() == [("INV-3", "mismatch:tax_amount", "ERP rounds tax per line", user)]
        assert conn.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'reconciliation.accepted'"
        ).fetchone() == (1,)

        # Ran minutes ago: the overview's window ends at the last whole minute.
        conn.execute(
            "UPDATE reconciliation_runs SET started_at = started_at - interval '5 minutes', "
            "finished_at = finished_at - interval '5 minutes'"
        )

    page.goto(f"{console_url}/")
    tile = page.get_by_text("Records matched: invoices")
    expect(tile).to_be_visible()
    tile.scroll_into_view_if_needed()
    page.screenshot(path="/tmp/recon-overview.png")


def test_the_page_shows_a_run_that_ends_while_it_is_open(
    page: Page, console_url: str, console_db: str, exports, reconcile
) -> None:
    exports([billing("INV-1"), billing("INV-2")], [erp("INV-1")])
    reconcile()
    reconcile()  # seconds later
    user, password = LOGINS["finance_ops"]
    page.goto(f"{console_url}/reconciliation")
    page.get_by_label("User name").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Breaks")).to_be_visible()
    expect(page.get_by_text("failed:")).to_have_count(0)
    ticks = page.locator(".js-plotly-plot .xtick text")
    expect(ticks.first).to_be_visible()
    labels = ticks.all_text_contents()
    assert len(set(labels)) == len(labels), labels  # runs seconds apart: ticks tell them apart

    exports([billing("INV-1", total="lots")], [erp("INV-1")])  # the scheduler's next run
    reconcile()

    # Within the page's follow interval (15 s), with no click.
    banner = page.get_by_text("The latest run of invoices (run 3) failed")
    expect(banner).to_be_visible(timeout=45_000)
    page.screenshot(path="/tmp/recon-followed.png")

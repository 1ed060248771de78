"""The Reconciliation page on a real run of two file sources: runs with their counts (a
failed one with its reason), the accuracy trend, breaks filtered by a pasted link, the
records side by side with the differing fields highlighted, links to the exception and the
transaction, and "Accept difference" for finance ops (a reason required), which viewers
never see and the server refuses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from demo.seed import seed_users
from q2c.database import create_db_engine
from q2c.settings import Settings
from tests.support.console import LOGINS
from tests.support.reconciling import NOW, billing, erp


@pytest.fixture
def reconciled_db(db_url: str, exports, reconcile) -> str:
    """The demo's logins; a run finding INV-2 missing in the ERP, INV-3's tax and currency
    differing and INV-4 twice in billing; then a run that failed on a bad amount."""
    engine = create_db_engine(db_url, Settings(database_url=None))
    seed_users(engine)
    engine.dispose()
    exports(
        [billing("INV-1"), billing("INV-2"), billing("INV-3"), billing("INV-4"), billing("INV-4")],
        [erp("INV-1"), erp("INV-3", taxTotal=20.5, currencyCode="USD"), erp("INV-4")],
    )
    assert reconcile().status == "succeeded"
    exports([billing("INV-1", total="lots")], [erp("INV-1")])
    assert reconcile(now=NOW + timedelta(minutes=15)).status == "failed"
    return db_url


def _frame(app: AppTest, column: str):
    return next(f.value for f in app.dataframe if column in f.value.columns)


@pytest.mark.parametrize("role", ("viewer", "finance_ops", "oncall", "admin"))
def test_each_role_sees_what_it_may(
    reconciled_db: str, console_app: Callable[..., AppTest], role: str
) -> None:
    app = console_app(reconciled_db, role, "reconciliation")

    assert not app.exception, app.exception
    if role == "viewer":
        assert [e.value for e in app.error] == [
            "You cannot open this page: viewing reconciliation runs and breaks needs the "
            f"finance_ops role or higher; {LOGINS[role][0]} is viewer."
        ]
        return
    assert app.title[0].value == "Reconciliation"
    assert [b.label for b in app.button if b.label == "Accept difference"] == ["Accept difference"]


def test_runs_show_counts_and_a_failed_runs_reason(
    reconciled_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(reconciled_db, "finance_ops", "reconciliation")

    (failed,) = [e.value for e in app.error]
    assert "latest run of **invoices** (run 2) failed" in failed
    assert "amount 'lots' is not a number (at billing.csv line 2)" in failed
    runs = _frame(app, "checked")
    assert list(runs["status"]) == ["failed", "succeeded"]
    assert (runs["checked"][1], runs["matched"][1], runs["accuracy"][1]) == (4, 1, "25.00%")
    assert runs["breaks"][1] == 4 and "missing_in:erp: 1" in runs["by type"][1]
    assert runs["error"][1] == "" and "is not a number" in runs["error"][0]
    (chart,) = app.get("plotly_chart")
    assert "Accuracy per run" in chart.proto.spec


def test_the_records_side_by_side_highlight_the_differing_fields_and_link_out(
    reconciled_db: str, console_app: Callable[..., AppTest]
) -> None:
    query = {"key": "INV-3", "type": "mismatch:currency", "break_run": "1"}
    app = console_app(reconciled_db, "finance_ops", "reconciliation", query)

    records = app.dataframe[2]  # runs, breaks, then the records
    table = records.value
    assert list(table.columns) == ["billing", "erp"]
    assert (table.loc["currency", "billing"], table.loc["currency", "erp"]) == ("EUR", "USD")
    assert table.loc["from", "billing"] == "billing.csv line 4"
    styles = records.proto.arrow_data.styler.styles
    highlighted = {
        table.index[int(n)]
        for selectors, props in re.findall(r"([^{}]+)\{([^}]*)\}", styles)
        if "background" in props
        for n in re.findall(r"_row(\d+)_col", selectors)
    }
    assert highlighted == {"currency", "tax_amount"}
    text = " ".join(m.value for m in app.markdown)
    assert "[Exception " in text and "](/exceptions?id=" in text
    assert "telemetry never saw this key" in text


def test_a_pasted_link_filters_the_breaks(
    reconciled_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(reconciled_db, "finance_ops", "reconciliation", {"kind": "mismatch"})

    breaks = _frame(app, "break")
    assert list(breaks["break"]) == ["mismatch:currency", "mismatch:tax_amount"]

    app.text_input(key="recon_search").set_value("INV-9").run()
    assert app.query_params["q"] == "INV-9"  # the address to paste says it
    assert "No break matches." in [c.value for c in app.caption]


def test_a_link_to_a_break_of_a_long_past_run_still_shows_that_break(
    reconciled_db: str, console_app: Callable[..., AppTest]
) -> None:
    with psycopg.connect(reconciled_db) as conn:  # 300 later runs of another reconciliation
        conn.execute(
            "INSERT INTO reconciliation_runs (reconciliation, object, status, started_at, "
            "finished_at, checked, matched, pending) "
            "SELECT 'payments', 'payment', 'succeeded', now() + n * interval '1 minute', "
            "now() + n * interval '1 minute', 0, 0, 0 FROM generate_series(1, 300) n"
        )
    query = {"reconciliation": "invoices", "key": "INV-3", "type": "mismatch:tax_amount"}

    app = console_app(reconciled_db, "finance_ops", "reconciliation", {**query, "break_run": "1"})

    assert not app.exception, app.exception
    assert app.selectbox(key="recon_name").value == "invoices"  # not fallen back to "(any)"
    assert app.selectbox(key="recon_break").value == "1|INV-3|mismatch:tax_amount"
    assert any("INV-3 · mismatch:tax_amount" in h.value for h in app.subheader)
    assert app.query_params["break_run"] == "1"


def test_a_list_of_breaks_cut_short_says_so(
    db_url: str, exports, reconcile, console_app: Callable[..., AppTest]
) -> None:
    engine = create_db_engine(db_url, Settings(database_url=None))
    seed_users(engine)
    engine.dispose()
    exports([billing(f"INV-{n}") for n in range(501)], [erp("INV-0")])
    assert reconcile().breaks == {"missing_in:erp": 500}
    exports([billing(f"INV-{n}") for n in range(502)], [erp("INV-0")])
    assert reconcile().breaks == {"missing_in:erp": 501}

    app = console_app(db_url, "finance_ops", "reconciliation")

    assert len(_frame(app, "break")) == 500
    assert any(
        "The first 500 breaks are listed, and there are more" in c.value for c in app.caption
    )
    app.selectbox(key="recon_run").set_value("1").run()
    assert len(_frame(app, "break")) == 500
    assert not any("there are more" in c.value for c in app.caption)


def test_a_link_to_a_break_that_never_was_says_so(
    reconciled_db: str, console_app: Callable[..., AppTest]
) -> None:
    query = {"key": "INV-404", "type": "missing_in:erp", "break_run": "1"}

    app = console_app(reconciled_db, "finance_ops", "reconciliation", query)

    assert not app.exception
    for not_a_run in ("9" * 30, "²"):  # not a run id at all: the link is ignored
        bogus = console_app(
            reconciled_db, "finance_ops", "reconciliation", {**query, "break_run": not_a_run}
        )
        assert not bogus.exception, bogus.exception
        assert [e.value for e in bogus.error if "Could not" in e.value] == []
    assert [w.value for w in app.warning] == [
        "Run 1 has no break missing_in:erp of INV-404: the link may be mistyped, or the run pruned."
    ]


def test_accepting_needs_a_reason_then_resolves_the_exception(
    reconciled_db: str, console_app: Callable[..., AppTest]
) -> None:
    query = {"key": "INV-2", "type": "missing_in:erp", "break_run": "1"}
    app = console_app(reconciled_db, "finance_ops", "reconciliation", query)

    accept = next(b for b in app.button if b.label == "Accept difference")
    accept.click().run()
    assert any("needs a reason" in e.value for e in app.error)

    next(t for t in app.text_area if t.label == "Reason (required)").set_value(
        "posted by hand in the ERP"
    )
    next(b for b in app.button if b.label == "Accept difference").click().run()

    assert any("Accepted missing_in:erp of INV-2" in s.value for s in app.success)
    assert any("posted by hand in the ERP" in s.value for s in app.success)
    assert not [b for b in app.button if b.label == "Accept difference"]
    with psycopg.connect(reconciled_db) as conn:
        assert conn.execute(
            "SELECT status, resolution FROM exceptions WHERE error_type = 'missing_in:erp'"
        ).fetchall() == [("resolved", "posted by hand in the ERP")]


def test_before_any_run_the_page_says_how_to_start(
    logins_only_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(logins_only_db, "finance_ops", "reconciliation")

    assert not app.exception and not app.error
    assert "No reconciliation has run yet" in app.info[0].value
    assert not app.get("plotly_chart")


def test_the_break_shown_stays_shown_when_a_newer_run_arrives_and_is_the_one_accepted(
    reconciled_db: str, console_app: Callable[..., AppTest], exports, reconcile
) -> None:
    query = {"key": "INV-2", "type": "missing_in:erp", "break_run": "1"}
    app = console_app(reconciled_db, "finance_ops", "reconciliation", query)
    assert app.subheader[-1].value == "invoice INV-2 · missing_in:erp"

    # While the reader types a reason, a newer run records the breaks again, and one more
    # (INV-0, listed first).
    exports(
        [billing("INV-0"), billing("INV-1"), billing("INV-2"), billing("INV-3")],
        [erp("INV-1"), erp("INV-3", taxTotal=20.5, currencyCode="USD")],
    )
    assert reconcile(now=NOW + timedelta(minutes=30)).status == "succeeded"
    st.cache_data.clear()
    next(t for t in app.text_area if t.label == "Reason (required)").set_value("known")
    next(b for b in app.button if b.label == "Accept difference").click().run()

    assert any("Accepted missing_in:erp of INV-2" in s.value for s in app.success)
    with psycopg.connect(reconciled_db) as conn:
        assert conn.execute(
            "SELECT key, break_type FROM reconciliation_acceptances"
        ).fetchall() == [("INV-2", "missing_in:erp")]

"""The exceptions page as a queue: its filters and order live in the address (a link pasted
into a ticket opens the same list), a bad link value falls back to the default, and the
queue's actions (assign to me, unassign, reopen) act on the ticked rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

import psycopg
from streamlit.testing.v1 import AppTest

from queries.kpis import close_blocking_scope
from sla.policy import load_policy
from tests.support.console import LOGINS


def _count_caption(app: AppTest) -> str:
    return next(c.value for c in app.caption if "matching exceptions" in c.value)


def test_a_link_sets_the_filters_and_the_order(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    (closed,) = db.execute(
        "SELECT count(*) FROM exceptions WHERE status = 'auto_resolved'"
    ).fetchone()
    query = {"status": ["auto_resolved"], "order": "newest first", "q": "period 11"}

    app = console_app(console_db, "finance_ops", "exceptions", query)

    assert not app.exception
    assert app.multiselect(key="f_status").value == ["auto_resolved"]
    assert app.selectbox(key="f_order").value == "newest first"
    assert app.text_input(key="f_search").value == "period 11"
    assert closed >= 1
    assert f"of {closed:,} matching exceptions" in _count_caption(app)


def test_values_a_link_may_not_hold_are_ignored(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    query = {"process": "no_such_process", "order": "sideways", "status": ["gone", "open"]}

    app = console_app(console_db, "finance_ops", "exceptions", query)

    assert not app.exception
    assert app.selectbox(key="f_process").value == "(any)"
    assert app.selectbox(key="f_order").value == "most urgent"
    assert app.multiselect(key="f_status").value == ["open"]
    mistyped = console_app(console_db, "finance_ops", "exceptions", {"status": "bogus"})
    default = console_app(console_db, "finance_ops", "exceptions")
    assert mistyped.multiselect(key="f_status").value == default.multiselect(key="f_status").value
    cleared = console_app(console_db, "finance_ops", "exceptions", {"status": ""})
    assert cleared.multiselect(key="f_status").value == []  # "any", as the address said


def test_the_overviews_breaks_link_lists_the_telemetrys_breaks_only(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    db.execute(
        "INSERT INTO exceptions (correlation_id, process, stage, system, kind, fingerprint, "
        "first_seen, last_seen) VALUES "
        "('INV-T', 'invoice_posting', 'invoice_recorded', 'erp', 'reconciliation', 'ft', "
        " now(), now()),"
        "('INV-R', NULL, 'reconcile:invoices', 'erp', 'reconciliation', 'fr', now(), now())"
    )
    (telemetry,) = db.execute(
        "SELECT count(*) FROM exceptions WHERE kind = 'reconciliation' AND q2c_is_open(status) "
        "AND NOT starts_with(stage, 'reconcile:')"
    ).fetchone()

    app = console_app(console_db, "finance_ops", "exceptions", {"reconciled_in": "telemetry"})

    assert not app.exception
    assert app.selectbox(key="f_reconciled_in").value == "telemetry"
    assert f"of {telemetry:,} matching exceptions" in _count_caption(app)


def test_changing_a_filter_writes_it_into_the_address(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "finance_ops", "exceptions")
    assert "status" not in app.query_params  # the defaults say nothing

    app.multiselect(key="f_impact").set_value(["high", "critical"]).run()
    app.selectbox(key="f_order").set_value("largest amount").run()

    assert app.query_params["impact"] == ["high", "critical"]
    assert app.query_params["order"] == "largest amount"
    again = console_app(console_db, "finance_ops", "exceptions", dict(app.query_params))
    assert again.multiselect(key="f_impact").value == ["high", "critical"]


def test_the_order_is_the_databases(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    newest = [
        row[0]
        for row in db.execute(
            "SELECT id FROM exceptions WHERE q2c_is_open(status) ORDER BY first_seen DESC, id DESC"
        )
    ]

    app = console_app(console_db, "finance_ops", "exceptions", {"order": "newest first"})

    editor = next(frame.value for frame in app.dataframe if "select" in frame.value)
    assert list(editor["id"]) == newest


def _tick(app: AppTest, ids: list[int]) -> None:
    """Tick rows as the data editor would keep them, and rerun as a tick does."""
    app.session_state["exceptions_editor:ticked"] = ids
    app.run()


def test_assign_to_me_then_unassign_then_reopen_from_the_queue(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    me = LOGINS["finance_ops"][0]
    [target] = db.execute(
        "SELECT id FROM exceptions WHERE q2c_is_open(status) ORDER BY id LIMIT 1"
    ).fetchone()
    app = console_app(console_db, "finance_ops", "exceptions")

    _tick(app, [target])
    app.button(key="assign_to_me").click().run()
    app.button(key="confirm_action").click().run()
    owned = db.execute("SELECT status, owner FROM exceptions WHERE id = %s", (target,)).fetchone()
    _tick(app, [target])
    app.button(key="unassign").click().run()
    app.button(key="confirm_action").click().run()
    queued = db.execute("SELECT status, owner FROM exceptions WHERE id = %s", (target,)).fetchone()
    db.execute(
        "UPDATE exceptions SET status = 'ignored', resolved_at = now(), resolution = 'test' "
        "WHERE id = %s",
        (target,),
    )
    reopened = console_app(console_db, "finance_ops", "exceptions", {"status": ["ignored"]})
    _tick(reopened, [target])
    reopened.text_input(key="reason").set_value("not a test invoice after all").run()
    reopened.button(key="reopen").click().run()
    reopened.button(key="confirm_action").click().run()

    assert owned == ("assigned", me)
    assert queued == ("open", None)
    assert db.execute(
        "SELECT status, resolution, resolved_at FROM exceptions WHERE id = %s", (target,)
    ).fetchone() == ("open", None, None)
    assert [
        row[0]
        for row in db.execute(
            "SELECT action FROM exception_events WHERE exception_id = %s ORDER BY id", (target,)
        )
    ][-3:] == ["assigned", "unassigned", "reopened"]


def test_each_row_links_to_its_detail_within_the_filters(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "finance_ops", "exceptions", {"order": "oldest first"})

    editor = next(frame.value for frame in app.dataframe if "select" in frame.value)
    assert editor["owner"].notna().all()  # an exception nobody has shows a blank owner
    links = dict(zip(editor["id"], editor["link"], strict=True))
    assert links and all(
        link == f"/exceptions?order=oldest+first&id={i}" for i, link in links.items()
    )
    target = list(links)[-1]
    opened = console_app(
        console_db, "finance_ops", "exceptions", {"order": "oldest first", "id": str(target)}
    )
    assert opened.selectbox(key="detail_id").value == target
    assert opened.selectbox(key="f_order").value == "oldest first"
    assert opened.query_params["id"] == str(target)


def test_ignore_until_a_date_or_until_it_recurs_from_the_queue(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    first, second = (
        row[0]
        for row in db.execute(
            "SELECT id FROM exceptions WHERE q2c_is_open(status) ORDER BY id LIMIT 2"
        )
    )
    app = console_app(console_db, "finance_ops", "exceptions")
    day = datetime.now(UTC).date() + timedelta(days=30)

    app.text_input(key="reason").set_value("supplier fixes it next week").run()
    app.radio(key="ignore_for").set_value("until a date").run()
    app.date_input(key="ignore_until").set_value(day).run()
    _tick(app, [first])
    app.button(key="ignore").click().run()
    assert any(f"until {day} 00:00 UTC" in c.value for c in app.caption)
    app.button(key="confirm_action").click().run()
    assert app.text_input(key="reason").value == ""  # given for that ignore, not the next
    app.text_input(key="reason").set_value("supplier fixes it next week").run()
    app.radio(key="ignore_for").set_value("until it recurs").run()
    _tick(app, [second])
    app.button(key="ignore").click().run()
    app.button(key="confirm_action").click().run()

    assert db.execute(
        "SELECT id, status, ignored_until, ignored_until_recurs FROM exceptions "
        "WHERE id = ANY (%s) ORDER BY id",
        ([first, second],),
    ).fetchall() == [
        (first, "ignored", datetime.combine(day, time.min, tzinfo=UTC), False),
        (second, "ignored", None, True),
    ]
    shown = console_app(console_db, "finance_ops", "exceptions", {"id": str(second)})
    assert any("until its failure recurs" in i.value for i in shown.info)
    # Not in the default (open) list, its state is still said.
    assert [t.value for t in shown.text if t.value.startswith("Status:")] == [
        "Status: ignored · owner: nobody · resolution: supplier fixes it next week"
    ]


def test_regressed_exceptions_are_flagged_and_filtered(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    earlier, later = (
        row[0]
        for row in db.execute(
            "SELECT id FROM exceptions WHERE q2c_is_open(status) ORDER BY id LIMIT 2"
        )
    )
    db.execute("UPDATE exceptions SET regressed_from = %s WHERE id = %s", (earlier, later))

    app = console_app(console_db, "finance_ops", "exceptions", {"regressed": "yes"})

    editor = next(frame.value for frame in app.dataframe if "select" in frame.value)
    assert list(zip(editor["id"], editor["regressed"], strict=True)) == [(later, True)]
    assert app.toggle(key="regressed_toggle").value
    [flag] = [w.value for w in app.warning if "Regressed" in w.value]
    assert f"resolved exception {earlier}" in flag and f"id={earlier}" in flag


def test_save_the_filters_as_a_view_open_it_by_its_link_and_delete_it(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    app = console_app(console_db, "finance_ops", "exceptions", {"order": "oldest first"})
    app.multiselect(key="f_impact").set_value(["high"]).run()

    app.text_input(key="view_name").set_value("high, oldest first").run()
    app.button(key="save_view").click().run()
    link = "/exceptions?impact=high&order=oldest+first"
    assert any(f"[high, oldest first]({link})" in m.value for m in app.markdown)
    assert db.execute("SELECT name, query FROM saved_views").fetchall() == [
        ("high, oldest first", "impact=high&order=oldest+first")
    ]
    opened = console_app(
        console_db, "finance_ops", "exceptions", {"impact": ["high"], "order": "oldest first"}
    )
    assert opened.multiselect(key="f_impact").value == ["high"]
    other = console_app(console_db, "oncall", "exceptions")  # views are each person's own
    assert not any(link in m.value for m in other.markdown)

    app.selectbox(key="view_pick").set_value("high, oldest first").run()
    app.button(key="delete_view").click().run()

    assert db.execute("SELECT count(*) FROM saved_views").fetchone() == (0,)
    assert any("deleted" in s.value for s in app.success)


def test_the_overviews_money_link_lists_the_exceptions_blocking_the_close(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    erp_bound, month_start = close_blocking_scope(load_policy(), datetime.now(UTC))
    (blocking,) = db.execute(
        "SELECT count(*) FROM exceptions WHERE q2c_is_open(status) AND currency = 'USD' "
        "AND process || '/' || stage = ANY (%s) AND first_seen >= %s",
        (erp_bound, month_start),
    ).fetchone()

    app = console_app(
        console_db, "finance_ops", "exceptions", {"close": "blocking", "currency": "USD"}
    )

    assert not app.exception
    assert app.toggle(key="close_toggle").value is True
    assert app.text_input(key="f_currency").value == "USD"
    assert blocking > 0
    assert f"of {blocking:,} matching exceptions" in _count_caption(app)
    other = console_app(
        console_db, "finance_ops", "exceptions", {"close": "blocking", "currency": "EUR"}
    )
    assert "No exceptions match" in other.info[0].value  # the close's money is in USD only


def test_the_money_blocking_the_close_counts_each_transaction_once_in_the_list_and_tile(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    erp_bound, month_start = close_blocking_scope(load_policy(), datetime.now(UTC))
    scope = (
        "q2c_is_open(status) AND currency = 'USD' AND process || '/' || stage = ANY (%s) "
        "AND first_seen >= %s"
    )
    # A second exception on a transaction that already blocks the close (its dead letter
    # and the stall it causes): two rows in the list, one sum of money.
    db.execute(
        "INSERT INTO exceptions (correlation_id, process, stage, system, kind, fingerprint, "
        "error_type, message, first_seen, last_seen, occurrences, amount, currency) "
        "SELECT correlation_id, process, stage, system, 'stalled', md5('second'), 'Stalled', "
        "'a second failure', first_seen, last_seen, 1, amount, currency FROM exceptions "
        f"WHERE id = (SELECT min(id) FROM exceptions WHERE {scope})",
        (erp_bound, month_start),
    )
    (stake, transactions, rows) = db.execute(
        "SELECT sum(amount), count(*), sum(n) FROM (SELECT max(amount) AS amount, count(*) AS n "
        f"FROM exceptions WHERE {scope} GROUP BY correlation_id) t",
        (erp_bound, month_start),
    ).fetchone()
    said = f"USD {float(stake):,.2f} on {transactions:,} transaction"

    listed = console_app(
        console_db, "finance_ops", "exceptions", {"close": "blocking", "currency": "USD"}
    )
    overview = console_app(console_db, "finance_ops")

    assert rows > transactions  # the list has a row per exception
    assert f"of {rows:,} matching exceptions" in _count_caption(listed)
    assert any(c.value.startswith("At stake") and said in c.value for c in listed.caption)
    assert [m.value for m in overview.metric if m.label == "USD"] == [f"{float(stake):,.2f}"]


def test_grouped_the_list_counts_what_its_groups_hold(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    (open_ones,) = db.execute(
        "SELECT count(*) FROM exceptions WHERE q2c_is_open(status)"
    ).fetchone()

    app = console_app(console_db, "finance_ops", "exceptions", {"grouped": "yes"})

    assert not app.exception
    groups = app.dataframe[0].value
    assert "matching" not in groups.columns  # the total is the caption's, not a column
    assert groups["exceptions"].sum() == open_ones
    assert f"of {open_ones:,} matching exceptions" in _count_caption(app)


def test_resolving_a_break_of_the_records_says_it_comes_back_unless_accepted(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    [(records_break,)] = db.execute(
        "INSERT INTO exceptions (correlation_id, process, stage, system, kind, fingerprint, "
        "first_seen, last_seen) VALUES "
        "('INV-R', NULL, 'reconcile:invoices', 'erp', 'reconciliation', 'fr', now(), now()) "
        "RETURNING id"
    ).fetchall()
    [(telemetry,)] = db.execute(
        "SELECT min(id) FROM exceptions WHERE q2c_is_open(status) AND kind <> 'reconciliation'"
    ).fetchall()
    said = "opens again at the reconciliation's next run"

    app = console_app(console_db, "finance_ops", "exceptions", {"kind": "reconciliation"})
    app.text_input(key="reason").set_value("posted by hand").run()
    _tick(app, [records_break])
    app.button(key="resolve").click().run()
    assert any(said in info.value for info in app.info)

    other = console_app(console_db, "finance_ops", "exceptions")
    other.text_input(key="reason").set_value("fixed").run()
    _tick(other, [telemetry])
    other.button(key="resolve").click().run()
    assert any("Resolve 1 exception?" in text.value for text in other.markdown)
    assert not any(said in info.value for info in other.info)

    query = {"kind": "reconciliation", "grouped": "yes"}
    grouped = console_app(console_db, "finance_ops", "exceptions", query)
    grouped.selectbox(key="group_pick").set_value("fr").run()  # the break's group
    grouped.text_input(key="group_reason").set_value("posted by hand").run()
    grouped.button(key="group_resolved").click().run()
    assert not grouped.exception
    assert any(said in info.value for info in grouped.info)

"""Every page renders for the roles that may open it, and refuses the others by name."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from q2c.database import create_db_engine
from q2c.settings import Settings
from queries.roles import UnknownUser
from queries.sign_in import MAX_FAILURES_PER_USER
from queries.tokens import authenticate_token
from queries.users import User
from tests.support.console import APP, LOGINS

PAGES = {  # page → least role
    "overview": "viewer",
    "stages": "viewer",
    "exceptions": "finance_ops",
    "explorer": "finance_ops",
    "dead_letters": "oncall",
    "admin": "admin",
    "audit": "admin",
    "tokens": "viewer",
}
ROLES = ("viewer", "finance_ops", "oncall", "admin")
REFUSALS = {
    "exceptions": "viewing exceptions needs the finance_ops role",
    "explorer": "following transactions in the trace explorer needs the finance_ops role",
    "dead_letters": "viewing dead letters and their payloads needs the oncall role",
    "admin": "managing users needs the admin role",
    "audit": "reading the audit log needs the admin role",
}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_opens_its_pages_and_does_not_see_the_rest(
    console_db: str, console_app: Callable[..., AppTest], role: str
) -> None:
    for page, least in PAGES.items():
        if ROLES.index(role) >= ROLES.index(least):
            app = console_app(console_db, role, page)
            assert not app.exception, (role, page, app.exception)
            assert app.title, (role, page)
            assert not app.error, (role, page, [e.value for e in app.error])
        else:  # at its address, hidden from the menu: it says which role it needs
            app = console_app(console_db, role, page)
            assert not app.exception, (role, page, app.exception)
            assert [e.value for e in app.error] == [
                f"You cannot open this page: {REFUSALS[page]} or higher; "
                f"{LOGINS[role][0]} is {role}."
            ], (role, page)


@pytest.mark.parametrize("page", list(REFUSALS))
def test_a_page_checks_the_role_in_the_database_not_the_session(
    console_db: str, monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    # The session claims the page's role, but the database says `cio` is a viewer; the
    # page is run directly, as if navigation had been bypassed.
    monkeypatch.setenv("DATABASE_URL", console_db)
    st.cache_resource.clear()
    app = AppTest.from_file(str(APP.parent / "app_pages" / f"{page}.py"), default_timeout=60)
    app.session_state["user"] = User("cio", PAGES[page], "Cio")
    app.run()

    assert not app.exception
    assert REFUSALS[page] in app.error[0].value


def test_sign_in_refuses_a_wrong_password_and_accepts_the_right_one(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db)
    user, password = LOGINS["finance_ops"]

    app.text_input[0].input(user)
    app.text_input[1].input("not the password")
    app.button[0].click().run()
    refused = [e.value for e in app.error]
    app.text_input[0].input(user)
    app.text_input[1].input(password)
    app.button[0].click().run()

    assert refused == ["Unknown user or wrong password."]
    assert app.session_state["user"].role == "finance_ops"
    assert app.title[0].value == "Quote-to-cash overview"


def test_sign_in_is_refused_for_a_while_after_repeated_failures_and_audited(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db)
    user, password = LOGINS["oncall"]

    def attempt(secret: str) -> list[str]:
        app.text_input[0].input(user)
        app.text_input[1].input(secret)
        app.button[0].click().run()
        return [e.value for e in app.error]

    failures = [attempt(f"guess {n}") for n in range(MAX_FAILURES_PER_USER)]
    locked = attempt(password)  # the right password, but too late

    assert failures == [["Unknown user or wrong password."]] * MAX_FAILURES_PER_USER
    assert len(locked) == 1 and locked[0].startswith("Too many failed sign-ins. Try again in 15")
    assert "user" not in app.session_state
    with psycopg.connect(console_db) as conn:
        actions = conn.execute(
            "SELECT action FROM audit_log WHERE actor = %s ORDER BY id", (user,)
        ).fetchall()
    assert actions == [("sign_in.failed",)] * MAX_FAILURES_PER_USER + [("sign_in.refused",)]


def test_a_user_creates_a_token_sees_it_once_and_revokes_it(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "viewer", "tokens")
    app.text_input[0].input("laptop")
    app.button[0].click().run()
    shown = [block.value for block in app.code]
    engine = create_db_engine(console_db, Settings(database_url=None))
    try:
        who = authenticate_token(engine, shown[0], "test").user.username
        app.button(key="dismiss_token").click().run()
        label = app.selectbox(key="revoke_id").format_func(app.selectbox(key="revoke_id").value)
        app.button(key="revoke_token").click().run()
        authenticate_token(engine, shown[0], "test")  # asked first: not revoked yet
        app.button(key="confirm_revoke").click().run()
        with pytest.raises(UnknownUser):
            authenticate_token(engine, shown[0], "test")
    finally:
        engine.dispose()

    assert not app.exception
    assert len(shown) == 1 and shown[0].startswith("q2c_pat_")
    assert who == LOGINS["viewer"][0]
    assert not app.code  # shown once
    table = app.dataframe[0].value
    assert table["token"][0] == shown[0][:12] + "…" and table["state"][0] == "revoked"
    assert label.startswith(f"laptop · {shown[0][:12]}… · created ")  # named, not a number
    assert [s.value for s in app.success] == [f"Token {label} revoked."]
    with psycopg.connect(console_db) as conn:
        [(detail,)] = conn.execute(
            "SELECT detail FROM audit_log WHERE action = 'token.revoked'"
        ).fetchall()
    assert detail == {"token": f"laptop ({shown[0][:12]}…)"}


def test_exception_detail_shows_business_context_and_history(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "finance_ops", "exceptions")

    assert not app.exception
    tiles = {metric.label: metric.value for metric in app.metric}
    assert {"Customer", "Invoice", "Amount", "Legal entity", "Age"} <= set(tiles)
    assert app.get("download_button")
    failures = next(frame.value for frame in app.dataframe if "trace_id" in frame.value)
    assert len(failures) >= 1
    assert {"occurred_at", "message", "failures"} <= set(failures.columns)
    assert all(len(trace) == 32 for trace in failures["trace_id"])


def test_the_exceptions_list_says_how_many_match_and_exports_them_all(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    (matching,) = db.execute("SELECT count(*) FROM exceptions WHERE q2c_is_open(status)").fetchone()

    app = console_app(console_db, "finance_ops", "exceptions")

    assert not app.exception
    assert f"Showing 1 to {matching:,} of {matching:,} matching exceptions" in [
        caption.value for caption in app.caption
    ]
    [export] = [b for b in app.get("download_button") if "Export CSV" in b.proto.label]
    assert export.proto.label == f"Export CSV (all {matching:,})"


def test_grouped_the_list_below_the_groups_holds_the_picked_groups_exceptions(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    groups = dict(
        db.execute(
            "SELECT fingerprint, array_agg(id ORDER BY id) FROM exceptions "
            "WHERE q2c_is_open(status) GROUP BY fingerprint"
        ).fetchall()
    )
    matching = sum(len(ids) for ids in groups.values())

    def listed(app: AppTest) -> list[int]:
        editor = next(frame.value for frame in app.dataframe if "select" in frame.value)
        return sorted(editor["id"])

    app = console_app(console_db, "finance_ops", "exceptions", {"grouped": "yes"})

    assert not app.exception
    assert len(groups) > 1
    captions = [caption.value for caption in app.caption]
    assert f"{len(groups)} groups of {matching} matching exceptions" in captions
    largest = app.selectbox(key="group_pick").value  # the page opens on the largest group
    assert len(groups[largest]) == max(len(ids) for ids in groups.values())
    assert listed(app) == groups[largest]
    size = len(groups[largest])
    assert f"Showing 1 to {size} of {size} exceptions in this group" in captions
    [export] = [b for b in app.get("download_button") if "Export CSV" in b.proto.label]
    assert export.proto.label == f"Export CSV (all {size})"

    other = next(fingerprint for fingerprint in groups if fingerprint != largest)
    app.selectbox(key="group_pick").set_value(other).run()

    assert not app.exception
    assert listed(app) == groups[other]


def test_navigation_follows_a_role_change_at_once_and_a_disabled_user_is_signed_out(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    admin = LOGINS["admin"][0]
    db.execute("UPDATE users SET role = 'viewer' WHERE username = %s", (admin,))
    refused = console_app(console_db, "admin", "admin")  # the session still says admin
    assert "managing users needs the admin role" in refused.error[0].value

    db.execute("UPDATE users SET disabled = true WHERE username = %s", (admin,))
    app = console_app(console_db, "admin")

    assert "user" not in app.session_state
    assert any("can no longer sign in" in warning.value for warning in app.warning)
    assert app.button(key="FormSubmitter:sign_in-Sign in")


def test_exception_detail_tiles_lead_with_the_currency_and_give_times_to_the_minute(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "finance_ops", "exceptions")

    tiles = {metric.label: metric.value for metric in app.metric}
    assert re.fullmatch(r"[A-Z]{3} [\d,]+\.\d\d|—", tiles["Amount"]), tiles["Amount"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC|—", tiles["Due"]), tiles["Due"]
    assert not tiles["Age"].startswith("-")
    assert app.selectbox(key="assign_to").value == LOGINS["finance_ops"][0]  # yourself


def test_trace_explorer_finds_a_transaction_by_business_key(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "finance_ops", "explorer")
    app.text_input(key="explorer_key").input("INV-10").run()

    assert not app.exception
    summary = next(m.value for m in app.markdown if "now at" in m.value)
    assert "**invoice_posting**" in summary and "status **completed**" in summary
    assert "invoice INV-10" in summary
    assert app.metric[0].value == "EUR 500.00"
    waterfall = app.get("plotly_chart")[0]
    assert waterfall is not None
    happened = next(f.value for f in app.dataframe if "what" in f.value.columns)
    assert list(happened["time"]) == sorted(happened["time"])
    assert "stage reached · ok" in set(happened["what"])


def test_trace_explorer_opens_on_the_failed_span_with_links_to_the_exception(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "finance_ops", "explorer", {"q": "INV-11"})

    assert not app.exception
    shown = next(m.value for m in app.markdown if ":red[error:" in m.value)
    assert "period 11 closed" in shown
    happened = next(f.value for f in app.dataframe if "what" in f.value.columns)
    links = set(happened["link"].dropna())
    assert any(link.startswith("/exceptions?id=") for link in links), links
    assert any(link.startswith("/dead_letters?id=") for link in links), links
    stages = happened[happened["what"].str.startswith("stage reached")]
    assert set(stages["link"]) == {"/stages?process=invoice_posting"}  # every row opens
    assert app.query_params["span"]  # the span shown has its own address


def test_an_empty_trace_explorer_lists_recent_and_failing_transactions(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "finance_ops", "explorer")

    assert not app.exception
    recent, failing = (frame.value for frame in app.dataframe)
    assert len(recent) > len(failing) > 0
    assert all(link.startswith("/explorer?q=") for link in recent["open"])
    assert "/explorer?q=INV-11" in set(failing["open"])


def test_dead_letter_payloads_are_shown_to_on_call(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "oncall", "dead_letters")

    assert not app.exception
    assert any('"invoice": "INV-11"' in code.value for code in app.code)


def test_a_link_to_a_dead_letter_no_longer_listed_shows_that_letter_and_says_so(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    [(replayed, correlation_id)] = db.execute(
        "UPDATE dead_letters SET status = 'replayed' "
        "WHERE id = (SELECT min(id) FROM dead_letters) RETURNING id, correlation_id"
    ).fetchall()

    app = console_app(console_db, "oncall", "dead_letters", {"id": str(replayed)})

    assert not app.exception
    shown = app.selectbox(key="payload_id")
    assert shown.value == replayed  # not the first letter of the list instead
    assert shown.format_func(replayed) == f"{replayed} (not in this list)"
    assert any("status **replayed**" in text.value for text in app.markdown)
    assert app.query_params["id"] == str(replayed)

    listed = console_app(console_db, "oncall", "dead_letters", {"status": "replayed"})
    assert listed.selectbox(key="dl_status").value == "replayed"  # the link's list
    assert correlation_id in set(listed.dataframe[0].value["correlation_id"])


def test_an_admin_disables_a_user_from_the_console_and_the_audit_log_shows_it(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    finance = LOGINS["finance_ops"][0]
    app = console_app(console_db, "admin", "admin")
    app.selectbox(key="manage_user").set_value(finance).run()
    app.button(key="disable_user").click().run()

    assert [s.value for s in app.success] == [f"{finance} is disabled"]
    assert db.execute("SELECT disabled FROM users WHERE username = %s", (finance,)).fetchone()[0]
    audit = console_app(console_db, "admin", "audit")
    audit.selectbox(key="a_action").set_value("user.disabled").run()
    table = audit.dataframe[0].value
    assert list(table["action"]) == ["user.disabled"]
    assert list(table["object_id"]) == [finance]
    assert list(table["actor"]) == [LOGINS["admin"][0]]
    assert "1 to 1 of 1 matching actions" in audit.caption[0].value
    audit.selectbox(key="a_object_type").set_value("user").run()
    assert list(audit.dataframe[0].value["object_id"]) == [finance]
    # Every kind of object the product audits can be chosen, and no other.
    assert audit.selectbox(key="a_object_type").options == [
        "(any)",
        "exception",
        "user",
        "dead letter",
        "redrive",
        "reconciliation break",
        "silence",
        "channel",
        "saved view",
    ]


def test_a_refused_new_user_stays_in_the_form_to_correct_and_an_added_one_leaves_it(
    console_db: str, console_app: Callable[..., AppTest], db: psycopg.Connection
) -> None:
    app = console_app(console_db, "admin", "admin")
    app.text_input(key="new_user_name").set_value("grace")
    app.selectbox(key="new_user_role").set_value("oncall")
    app.text_input(key="new_user_password").set_value("short")
    next(b for b in app.button if b.label == "Add").click().run()

    assert any("10 characters" in e.value for e in app.error)
    assert app.text_input(key="new_user_name").value == "grace"  # kept, to correct
    assert app.selectbox(key="new_user_role").value == "oncall"
    app.text_input(key="new_user_password").set_value("a-long-Passw0rd!")
    next(b for b in app.button if b.label == "Add").click().run()

    assert [s.value for s in app.success] == ["added grace (oncall)"]
    assert app.text_input(key="new_user_name").value == ""  # emptied for the next
    assert db.execute("SELECT role FROM users WHERE username = 'grace'").fetchone() == ("oncall",)


def test_an_admin_cannot_disable_themselves(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "admin", "admin")
    app.selectbox(key="manage_user").set_value(LOGINS["admin"][0]).run()
    app.button(key="disable_user").click().run()

    assert [e.value for e in app.error] == ["you cannot disable yourself (ask another admin)"]


def test_a_stages_link_opens_that_process_and_window_and_follows_the_choice(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(
        console_db, "viewer", "stages", {"process": "invoice_posting", "hours": "168"}
    )

    assert not app.exception
    assert app.selectbox(key="process").value == "invoice_posting"
    assert app.selectbox(key="hours").value == "168"
    app.selectbox(key="process").set_value("payment_application").run()
    assert app.query_params["process"] == "payment_application"
    assert "hours" in app.query_params  # not the default: said in the link

    bad = console_app(console_db, "viewer", "stages", {"process": "no_such", "hours": "5"})
    assert not bad.exception  # a link's unknown values are ignored
    assert bad.selectbox(key="hours").value == "24"


def test_the_funnel_gives_its_percentages_to_a_tenth_as_the_table_does(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "viewer", "stages", {"process": "invoice_posting"})

    funnel = json.loads(app.get("plotly_chart")[0].proto.spec)["data"][0]  # the first chart
    assert funnel["type"] == "funnel"
    assert funnel["texttemplate"] == "%{value:,} (%{percentInitial:.1%})"  # 99.8 %, not 100 %

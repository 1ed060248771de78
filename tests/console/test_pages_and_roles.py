"""Every page renders for the roles that may open it, and refuses the others by name."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from queries.users import User
from tests.console.conftest import APP, LOGINS

PAGES = {  # page → least role
    "overview": "viewer", "stages": "viewer", "exceptions": "finance_ops",
    "explorer": "finance_ops", "dead_letters": "oncall", "admin": "admin",
}  # fmt: skip
ROLES = ("viewer", "finance_ops", "oncall", "admin")
REFUSALS = {
    "exceptions": "viewing exceptions needs the finance_ops role",
    "explorer": "viewing exceptions needs the finance_ops role",
    "dead_letters": "viewing dead letters and their payloads needs the oncall role",
    "admin": "managing users needs the admin role",
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
        else:
            with pytest.raises(ValueError, match="Could not find a navigation page"):
                console_app(console_db, role, page)


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


def test_trace_explorer_finds_a_transaction_by_business_key(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "finance_ops", "explorer")
    app.text_input(key="explorer_key").input("INV-10").run()

    assert not app.exception
    summary = next(m.value for m in app.markdown if "now at" in m.value)
    assert "**invoice_posting**" in summary and "status **completed**" in summary
    assert "invoice INV-10" in summary
    assert app.metric[0].value == "500.00 EUR"


def test_dead_letter_payloads_are_shown_to_on_call(
    console_db: str, console_app: Callable[..., AppTest]
) -> None:
    app = console_app(console_db, "oncall", "dead_letters")

    assert not app.exception
    assert any('"invoice": "INV-11"' in code.value for code in app.code)

"""Console fixtures: a database with a small quote-to-cash history, one login per role, the
app run by Streamlit's AppTest as a signed-in user, and the real console served by
`q2c console` and driven in Debian's headless Chromium through Playwright (never a
downloaded browser)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from demo.browser import CHROMIUM, CHROMIUM_ARGS, console_process
from demo.seed import seed_users
from q2c.database import create_db_engine
from q2c.settings import Settings
from queries.users import User
from sla.evaluate import evaluate
from sla.policy import load_policy
from tests.support.console import APP, LOGINS
from tests.support.peers import free_port
from tests.support.scenario import IN_ORDER, PROTOBUF
from tests.support.services import running_collector


@pytest.fixture
def logins_only_db(db_url: str) -> str:
    """A database with the demo's logins and no telemetry yet."""
    engine = create_db_engine(db_url, Settings(database_url=None))
    seed_users(engine)
    engine.dispose()
    return db_url


@pytest.fixture
def console_db(db_url: str) -> str:
    """A database holding the scenario's transactions, exceptions and a dead letter,
    evaluated, with the demo's logins."""
    with running_collector(Settings(database_url=None), db_url) as url:
        for path, request in IN_ORDER:
            response = httpx.post(url + path, content=request.SerializeToString(), headers=PROTOBUF)
            assert response.status_code == 200
    engine = create_db_engine(db_url, Settings(database_url=None))
    seed_users(engine)
    engine.dispose()
    with psycopg.connect(db_url, autocommit=True) as conn:
        evaluate(conn, load_policy())
    return db_url


@pytest.fixture
def console_app(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """Run the console against `database_url`, signed in as the login of `role` (or not),
    on `page`, opened by an address holding `query` (a pasted link's parameters)."""

    def run(
        database_url: str,
        role: str | None = None,
        page: str | None = None,
        query: dict[str, str | list[str]] | None = None,
    ) -> AppTest:
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("Q2C_REPLAY_ALLOWED_HOSTS", "127.0.0.1")
        st.cache_resource.clear()
        st.cache_data.clear()
        app = AppTest.from_file(str(APP), default_timeout=60)
        if role is not None:
            username = LOGINS[role][0]
            app.session_state["user"] = User(username, role, username.title())
        if page is None:  # the overview, opened by the address holding `query`
            app.query_params.update(query or {})
        app.run()
        if page is not None:
            try:
                app.switch_page(f"app_pages/{page}.py")
            except ValueError:
                # A page the role may not open is a refusal at its address, a page without
                # a file, which AppTest.switch_page cannot name: chosen by its address.
                [address] = [
                    page_hash
                    for page_hash, info in app._registered_pages.items()
                    if info.get("url_pathname") == page
                ]
                app._page_hash = address
            app.query_params.update(query or {})
            app.run()
        return app

    return run


@pytest.fixture
def console_url(console_db: str, tmp_path) -> Iterator[str]:
    """The real console (`q2c console`) on a free port, reading the console test database."""
    settings = {"Q2C_REPLAY_ALLOWED_HOSTS": "127.0.0.1"}
    with console_process(console_db, free_port(), tmp_path, settings) as url:
        yield url


@pytest.fixture
def page(console_url: str):
    """A Playwright page in headless Chromium."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        tab = context.new_page()
        tab.set_default_timeout(30_000)
        yield tab
        browser.close()

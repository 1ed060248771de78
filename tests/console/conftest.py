"""Console fixtures: a database with a small quote-to-cash history, one login per role, and
the app run by Streamlit's AppTest as a signed-in user."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from demo.seed import DEMO_USERS, seed_users
from q2c.database import create_db_engine
from q2c.settings import Settings
from queries.users import User
from sla.evaluate import evaluate
from sla.policy import load_policy
from tests.collectors.scenario import IN_ORDER, PROTOBUF
from tests.support.services import running_collector

APP = Path(__file__).resolve().parents[2] / "console" / "streamlit_app.py"
LOGINS = {role: (user, password) for user, role, password in DEMO_USERS}


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
    """Run the console against `database_url`, signed in as the login of `role` (or not)."""

    def run(database_url: str, role: str | None = None, page: str | None = None) -> AppTest:
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("Q2C_REPLAY_ALLOWED_HOSTS", "127.0.0.1")
        st.cache_resource.clear()
        st.cache_data.clear()
        app = AppTest.from_file(str(APP), default_timeout=60)
        if role is not None:
            username = LOGINS[role][0]
            app.session_state["user"] = User(username, role, username.title())
        app.run()
        if page is not None:
            app.switch_page(f"app_pages/{page}.py").run()
        return app

    return run

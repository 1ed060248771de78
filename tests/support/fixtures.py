"""Fixtures shared by the replay, CLI and query tests: sandbox targets, one user per role
with a token each, dead letters delivered through the collector, a dispatcher."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from sqlalchemy import Engine

from demo.targets import TargetState, create_targets
from q2c.settings import Settings
from queries.tokens import create_token
from queries.users import create_user
from replay.dispatcher import Dispatcher
from tests.support.otlp import dead_letter_record, logs_request
from tests.support.services import running_app, running_collector

PASSWORD = "correct horse battery"
USERS = {"ada": "admin", "fin": "finance_ops", "ops": "oncall", "cio": "viewer", "ops2": "oncall"}


@pytest.fixture
def replay_settings() -> Settings:
    """Quick retries, loopback allowed."""
    return Settings(
        database_url=None,
        replay_allowed_hosts="127.0.0.1",
        replay_backoff_seconds=0.05,
        replay_rate_per_host=1000,
        replay_timeout_seconds=5,
        replay_max_attempts=4,
    )


@pytest.fixture
def targets() -> Iterator[tuple[TargetState, str]]:
    """Fake CRM/billing/ERP services and their base URL."""
    state = TargetState()
    with running_app(create_targets(state)) as url:
        yield state, url


@pytest.fixture
def users(engine: Engine) -> dict[str, str]:
    """One user per role (and a second on-call engineer)."""
    for name, role in USERS.items():
        create_user(engine, name, role, PASSWORD)
    return USERS


@pytest.fixture
def tokens(engine: Engine, users: dict[str, str]) -> dict[str, str]:
    """A personal access token per user, by user name."""
    return {name: create_token(engine, name, name)[0] for name in users}


@pytest.fixture
def dead_letters(db_url: str, targets, users) -> Callable[[int], list[int]]:
    """Deliver `n` dead-lettered ERP postings through the collector (to the sandbox's ERP,
    or to `target`); returns their IDs."""
    _, base = targets

    def deliver(
        n: int,
        first: int = 0,
        target: str | None = None,
        payload: str | None = None,
        headers: dict[str, str] | None = None,
        message: str = "period 2026-11 is closed",
    ) -> list[int]:
        records = [
            dead_letter_record(
                f"INV-R{first + i}",
                at_s=10 + i,
                target=target or f"{base}/erp/invoices/INV-R{first + i}",
                payload=payload or f'{{"invoice": "INV-R{first + i}"}}',
                headers=headers,
                message=message,
            )
            for i in range(n)
        ]
        with running_collector(Settings(database_url=None), db_url) as url:
            response = httpx.post(
                f"{url}/v1/logs",
                content=logs_request(*records).SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )
        assert response.status_code == 200
        with psycopg.connect(db_url) as conn:
            rows = conn.execute(
                "SELECT id FROM dead_letters WHERE correlation_id = ANY(%s) "
                "ORDER BY correlation_id",
                ([f"INV-R{first + i}" for i in range(n)],),
            ).fetchall()
        return [row[0] for row in rows]

    return deliver


@pytest.fixture
def dispatcher(db_url: str, replay_settings: Settings) -> Iterator[Dispatcher]:
    """A replay dispatcher on the test database."""
    instance = Dispatcher(db_url, replay_settings)
    yield instance
    instance.close()

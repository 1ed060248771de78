"""Fixtures for evaluating: a collector to send scenarios through, and one-call evaluation
and KPIs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from q2c.database import create_db_engine
from q2c.settings import Settings
from queries.kpis import collect_kpis
from sla.evaluate import EvaluationReport, evaluate
from sla.policy import Policy, load_policy
from tests.support.services import running_collector


@pytest.fixture(scope="session")
def policy() -> Policy:
    """The shipped sla.yaml."""
    return load_policy()


@pytest.fixture
def collector(db_url: str) -> Iterator[str]:
    """Base URL of a collector writing into the test database."""
    with running_collector(Settings(database_url=None), db_url) as url:
        yield url


@pytest.fixture
def send(collector: str) -> Callable[..., None]:
    """POST OTLP protobuf requests to the collector, each must be accepted."""

    def post(*requests: Any, path: str = "/v1/traces") -> None:
        for request in requests:
            response = httpx.post(
                collector + path,
                content=request.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )
            assert response.status_code == 200, response.content

    return post


@pytest.fixture
def run_evaluation(db_url: str, policy: Policy) -> Callable[[], EvaluationReport]:
    """Run one evaluation on its own connection."""

    def run() -> EvaluationReport:
        with psycopg.connect(db_url, autocommit=True) as conn:
            return evaluate(conn, policy)

    return run


@pytest.fixture
def kpis(db_url: str, policy: Policy) -> Iterator[Callable[..., dict]]:
    """The KPI document over a window (default 24 h) ending now (or at `now`)."""
    engine = create_db_engine(db_url, Settings(database_url=None))
    yield lambda window=timedelta(hours=24), now=None: collect_kpis(engine, policy, window, now)
    engine.dispose()

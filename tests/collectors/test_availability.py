"""Outages and back-pressure: 503/429 with Retry-After, never 500, and recovery by itself."""

from __future__ import annotations

import threading
import time

import httpx
import psycopg
from sqlalchemy.engine import make_url

from q2c.settings import Settings
from tests.collectors.scenario import FIRST, PROTOBUF
from tests.support.proxy import TcpProxy
from tests.support.services import free_port, running_collector

DEADLINE = 30  # in seconds, for conditions polled below


def _post(client: httpx.Client) -> httpx.Response:
    return client.post("/v1/traces", content=FIRST.SerializeToString(), headers=PROTOBUF)


def test_unreachable_database_gets_503_with_retry_after(settings: Settings) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/q2c?connect_timeout=2"
    with running_collector(settings, closed) as url, httpx.Client(base_url=url) as client:
        response = _post(client)
        ready = client.get("/readyz")
        alive = client.get("/healthz")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert ready.status_code == 503 and "database unreachable" in ready.json()["reason"]
    assert alive.status_code == 200


def test_readiness_requires_current_migrations(settings: Settings, empty_db: str) -> None:
    with running_collector(settings, empty_db) as url, httpx.Client(base_url=url) as client:
        ready = client.get("/readyz")

    assert ready.status_code == 503
    assert "run q2c migrate" in ready.json()["reason"]


def test_collector_recovers_when_the_database_comes_back(
    settings: Settings, db_url: str, db: psycopg.Connection
) -> None:
    target = make_url(db_url)
    socket_dir = target.query.get("host")  # the embedded server listens on a Unix socket
    port = target.port or 5432
    proxy = TcpProxy(f"{socket_dir}/.s.PGSQL.{port}" if socket_dir else (target.host, port))
    proxy.start()
    via_proxy = (
        target.difference_update_query(["host"]).set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False)
    )  # fmt: skip
    with running_collector(settings, via_proxy) as url, httpx.Client(base_url=url) as client:
        assert client.get("/readyz").status_code == 200
        proxy.stop()
        outage = _post(client)
        proxy.start()
        deadline = time.monotonic() + DEADLINE
        while (retry := _post(client)).status_code != 200:
            assert retry.status_code == 503 and time.monotonic() < deadline
            time.sleep(float(retry.headers["retry-after"]))
    proxy.stop()

    assert outage.status_code == 503
    assert db.execute("SELECT count(*) FROM spans").fetchone() == (3,)


def _wait_for_lock_wait(db: psycopg.Connection) -> None:
    deadline = time.monotonic() + DEADLINE
    while not db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    ).fetchone()[0]:
        assert time.monotonic() < deadline, "the writer never reached the lock"
        time.sleep(0.05)


def test_more_requests_than_allowed_in_flight_get_429(db_url: str, db: psycopg.Connection) -> None:
    settings = Settings(database_url=None, max_inflight=1, retry_after_seconds=2)
    with (
        running_collector(settings, db_url) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        results: list[httpx.Response] = []
        with psycopg.connect(db_url) as blocker:
            blocker.execute("LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE")
            first = threading.Thread(target=lambda: results.append(_post(client)))
            first.start()
            _wait_for_lock_wait(db)
            with httpx.Client(base_url=url) as other:
                refused = _post(other)
            blocker.rollback()
        first.join(DEADLINE)

    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"
    assert [r.status_code for r in results] == [200]
    assert db.execute("SELECT count(*) FROM spans").fetchone() == (3,)

"""Outages and back-pressure: 503/429 with Retry-After, never 500, and recovery by itself."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import psycopg

from q2c.settings import Settings
from tests.support.peers import free_port
from tests.support.proxy import proxy_to
from tests.support.scenario import FIRST, PROTOBUF
from tests.support.services import running_collector

DEADLINE = 30  # in seconds, for conditions polled below


def _post(client: httpx.Client) -> httpx.Response:
    return client.post("/v1/traces", content=FIRST.SerializeToString(), headers=PROTOBUF)


def test_unreachable_database_gets_503_with_retry_after(settings: Settings, caplog) -> None:
    port = free_port()
    closed = f"postgresql://postgres@127.0.0.1:{port}/q2c?connect_timeout=2"
    with running_collector(settings, closed) as url, httpx.Client(base_url=url) as client:
        response = _post(client)
        ready = client.get("/readyz")
        alive = client.get("/healthz")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert ready.status_code == 503 and ready.json()["reason"] == "database unreachable"
    assert str(port) not in response.text + ready.text  # unauthenticated: no address
    assert any(str(port) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert alive.status_code == 200


def test_readiness_requires_current_migrations(settings: Settings, empty_db: str) -> None:
    with running_collector(settings, empty_db) as url, httpx.Client(base_url=url) as client:
        ready = client.get("/readyz")

    assert ready.status_code == 503
    assert "run q2c migrate" in ready.json()["reason"]


def test_collector_recovers_when_the_database_comes_back(
    settings: Settings, db_url: str, db: psycopg.Connection
) -> None:
    proxy, via_proxy = proxy_to(db_url)
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


def _stalled_upload(port: int, declared: int) -> socket.socket:
    """A client that sends its headers and part of the body, then nothing more."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/traces HTTP/1.1\r\nHost: collector\r\n"
        b"Content-Type: application/x-protobuf\r\n"
        b"Content-Length: " + str(declared).encode() + b"\r\n\r\n" + b"\x0a"
    )
    return sock


def _status_line(sock: socket.socket) -> bytes:
    sock.settimeout(DEADLINE)
    return sock.recv(65536).split(b"\r\n", 1)[0]


def test_stalled_uploads_hold_no_slot_and_end_in_408(db_url: str, db: psycopg.Connection) -> None:
    settings = Settings(database_url=None, max_inflight=2, body_read_timeout_seconds=2)
    with running_collector(settings, db_url) as url:
        port = urlsplit(url).port
        stalled = [_stalled_upload(port, 10_000) for _ in range(20)]  # ten times max_inflight
        try:
            with httpx.Client(base_url=url) as prompt:
                served = _post(prompt)
            answers = [_status_line(sock) for sock in stalled]
        finally:
            for sock in stalled:
                sock.close()

    assert served.status_code == 200
    assert answers == [b"HTTP/1.1 408 Request Timeout"] * 20
    assert db.execute("SELECT count(*) FROM spans").fetchone() == (3,)

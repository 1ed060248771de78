"""A client that sends its request headers a byte at a time (slowloris) is disconnected once
Q2C_BODY_READ_TIMEOUT_SECONDS have passed, however steadily it trickles, so that such
clients cannot use up the collector's connections; prompt clients, and keep-alive ones
between requests, are not."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.peers import free_port

DEADLINE = 60  # in seconds: to start, and the longest a trickle is kept up


@pytest.fixture
def collector(db_url: str) -> Iterator[int]:
    """`q2c collector` (as deployed: its own process and server options) with a header and
    body deadline of one second; its port."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "Q2C_LOG_LEVEL": "ERROR",
        "Q2C_BODY_READ_TIMEOUT_SECONDS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "collector", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() - started < DEADLINE
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def _closed_while_trickling(port: int) -> bool:
    """Send a request's headers a byte every 0.2 s; whether the server closed the
    connection before they were all sent (or DEADLINE passed)."""
    headers = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + (
        b"X-Slow: " + b"a" * 2000 + b"\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as conn:
        started = time.monotonic()
        for byte in headers:
            try:
                conn.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return True
            conn.settimeout(0.2)
            try:
                if conn.recv(1) == b"":
                    return True
            except TimeoutError:
                pass
            except ConnectionResetError:
                return True
            if time.monotonic() - started > DEADLINE:
                return False
    return False


def test_headers_trickled_a_byte_at_a_time_get_the_connection_closed(collector: int) -> None:
    assert _closed_while_trickling(collector)


def test_a_keep_alive_client_sends_request_after_request_on_one_connection(
    collector: int,
) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{collector}") as client:
        first = client.get("/healthz")
        second = client.post("/v1/traces", json={})

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.extensions["network_stream"] is second.extensions["network_stream"]

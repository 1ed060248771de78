"""A collector killed in the middle of a request leaves no partial batch behind, and the
client's retry then stores the batch exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import psycopg

from tests.support.peers import free_port
from tests.support.scenario import FIRST, PROTOBUF
from tests.support.storing import counts

DEADLINE = 60  # in seconds


def _start_collector(db_url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": db_url, "Q2C_LOG_LEVEL": "ERROR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "collector", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "collector did not start"
        time.sleep(0.1)


def _writer_backends(db: psycopg.Connection) -> list[int]:
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    ).fetchall()
    return [pid for (pid,) in rows]


def test_killed_mid_request_stores_nothing_and_the_retry_stores_once(
    db_url: str, db: psycopg.Connection
) -> None:
    port = free_port()
    body = FIRST.SerializeToString()
    collector = _start_collector(db_url, port)
    outcome: list[object] = []

    def send() -> None:
        try:
            outcome.append(
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/traces",
                    content=body,
                    headers=PROTOBUF,
                    timeout=DEADLINE,
                )
            )
        except httpx.TransportError as exc:
            outcome.append(exc)

    with psycopg.connect(db_url) as blocker:
        # The writer COPYs the spans, then waits on this lock to derive transactions.
        blocker.execute("LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE")
        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + DEADLINE
        while not (waiting := _writer_backends(db)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        collector.send_signal(signal.SIGKILL)
        collector.wait(DEADLINE)
        sender.join(DEADLINE)
        blocker.rollback()

    assert isinstance(outcome[0], httpx.TransportError)  # never acknowledged
    deadline = time.monotonic() + DEADLINE
    while db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (waiting,)
    ).fetchone()[0]:
        assert time.monotonic() < deadline, "the orphaned transaction never ended"
        time.sleep(0.05)
    assert set(counts(db).values()) == {0}

    collector = _start_collector(db_url, port)
    try:
        for _ in range(2):  # the retry, and a late duplicate of it
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/traces", content=body, headers=PROTOBUF
            )
            assert response.status_code == 200
    finally:
        collector.terminate()
        collector.wait(DEADLINE)
    assert counts(db)["spans"] == 3
    assert db.execute("SELECT sum(occurrences) FROM exceptions").fetchone() == (1,)

"""Nothing lost, nothing twice, under faults: unique spans sent by clients that retry as OTLP
exporters do, while the collector is killed (SIGKILL) three times and the database goes away
twice, are all stored exactly once, and every derived row is what a quiet load derives.

Bounded: 20,000 spans by default; Q2C_FAULT_SPANS=200000 runs the full-size version.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx
import psycopg

from q2c.settings import Settings
from tests.support.otlp import stage_span, traces_request
from tests.support.peers import free_port
from tests.support.proxy import proxy_to
from tests.support.services import running_collector
from tests.support.storing import snapshot

SPANS = int(os.environ.get("Q2C_FAULT_SPANS", "20000"))
BATCH = 200  # spans per request
CLIENTS = 4
DEADLINE = 60 + SPANS / 200  # in seconds, for the whole storm
PROTOBUF = {"Content-Type": "application/x-protobuf"}
STAGES = ("invoice_posted", "invoice_recorded")


def _bodies() -> list[bytes]:
    """Two stage spans per invoice (every 25th recording fails), shuffled into requests so
    that stages arrive out of order, often in different requests."""
    spans = []
    for n in range(SPANS // 2):
        for index, stage in enumerate(STAGES):
            error = "period closed" if stage == "invoice_recorded" and n % 25 == 0 else None
            system = "erp" if index else "billing"
            spans.append(
                stage_span(
                    f"INV-F{n}",
                    "invoice_posting",
                    stage,
                    system,
                    at_s=n % 600 + index,
                    seq=(2 * n + index + 1) * 4,
                    error=error,
                    amount=100 + n % 900,
                    currency="EUR",
                )
            )
    random.Random(11).shuffle(spans)
    return [
        traces_request(*spans[i : i + BATCH]).SerializeToString()
        for i in range(0, len(spans), BATCH)
    ]


class _Collector:
    """`q2c collector` in its own process, which the storm kills and restarts."""

    def __init__(self, database_url: str) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "Q2C_LOG_LEVEL": "CRITICAL",
            "Q2C_RETRY_AFTER_SECONDS": "1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "collector", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def _send_until_stored(url: str, body: bytes, deadline: float) -> int:
    """POST as an OTLP exporter does: retry on no answer, 429 and 503 (after Retry-After)
    until stored; returns the attempts it took."""
    with httpx.Client(timeout=30) as client:
        for attempt in range(1, 10_000):
            assert time.monotonic() < deadline, "the storm did not end in time"
            try:
                response = client.post(f"{url}/v1/traces", content=body, headers=PROTOBUF)
            except httpx.TransportError:  # killed, or not yet listening again
                time.sleep(0.2)
                continue
            if response.status_code == 200:
                return attempt
            assert response.status_code in (429, 503), response.text
            time.sleep(float(response.headers["retry-after"]))
    raise AssertionError("unreachable")


def _storm(bodies: list[bytes], url: str, faults: list[Callable[[], None]]) -> int:
    """Send every body from CLIENTS threads; run the next fault each time another share of
    the bodies is stored. Returns the retries the clients needed."""
    deadline = time.monotonic() + DEADLINE
    pending = list(enumerate(bodies))
    stored: list[int] = []
    lock = threading.Lock()
    retries = [0]
    failures: list[BaseException] = []

    def client() -> None:
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    _, body = pending.pop()
                attempts = _send_until_stored(url, body, deadline)
                with lock:
                    stored.append(1)
                    retries[0] += attempts - 1
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    share = len(bodies) // (len(faults) + 1)
    for index, fault in enumerate(faults, start=1):
        while len(stored) < index * share and not failures:
            assert time.monotonic() < deadline, "the storm did not progress"
            time.sleep(0.05)
        fault()
    for thread in threads:
        thread.join(DEADLINE)
    assert not failures, failures
    assert len(stored) == len(bodies)
    return retries[0]


def test_killed_collectors_and_database_outages_lose_and_double_nothing(
    db_url: str, db: psycopg.Connection, new_db_url
) -> None:
    bodies = _bodies()
    proxy, via_proxy = proxy_to(db_url)
    collector = _Collector(via_proxy)

    def restart_collector() -> None:
        collector.kill()
        collector.start()

    def database_outage() -> None:
        proxy.stop()
        time.sleep(1.5)  # an outage of some length: requests meanwhile get 503 or no answer
        proxy.start()

    collector.start()
    try:
        retries = _storm(
            bodies,
            f"http://127.0.0.1:{collector.port}",
            [
                restart_collector,
                database_outage,
                restart_collector,
                database_outage,
                restart_collector,
            ],
        )
    finally:
        collector.stop()
        proxy.stop()

    quiet_url = new_db_url()
    with running_collector(Settings(database_url=None), quiet_url) as url, httpx.Client() as client:
        for body in bodies:
            assert client.post(f"{url}/v1/traces", content=body, headers=PROTOBUF).is_success
    with psycopg.connect(quiet_url) as quiet:
        expected = snapshot(quiet)

    assert retries > 0  # the faults did hit requests
    assert db.execute(
        "SELECT count(*), count(DISTINCT (trace_id, span_id)) FROM spans"
    ).fetchone() == (SPANS, SPANS)
    assert snapshot(db) == expected

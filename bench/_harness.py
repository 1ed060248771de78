"""Shared benchmark plumbing: a throwaway database and a collector process to measure."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from tempfile import TemporaryDirectory

import psutil
import psycopg
from sqlalchemy.engine import make_url

from q2c import migrate
from q2c.embedded import EmbeddedPostgres
from q2c.schema import maintain_partitions
from q2c.settings import load_settings
from q2c.urls import libpq_url

_DATABASES = itertools.count()  # several may be open at once


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A migrated database dropped afterwards, on DATABASE_URL's server or an embedded one."""
    configured = os.environ.get("DATABASE_URL")
    with contextlib.ExitStack() as stack:
        if configured:
            server = libpq_url(configured)
        else:
            folder = stack.enter_context(TemporaryDirectory(prefix="q2c-bench-"))
            embedded = stack.enter_context(EmbeddedPostgres(Path(folder) / "pgdata"))
            assert embedded.url is not None
            server = embedded.url
        name = f"q2c_bench_{os.getpid()}_{next(_DATABASES)}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        try:
            # As the owner: the runtime role's grants change no figure measured here.
            migrate.upgrade(url)
            settings = load_settings(database_url=url)
            maintain_partitions(url, settings.retention_days, settings.partitions_ahead_days)
            yield url
        finally:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU seconds the processes `pids` have used so far (none for one that
    has just ended)."""
    used = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = psutil.Process(pid).cpu_times()
            used += times.user + times.system
    return used


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def collector_process(url: str, port: int, **settings: str) -> Iterator[subprocess.Popen]:
    """`q2c collector` on 127.0.0.1:port, ready when this yields, stopped afterwards."""
    env = {**os.environ, "DATABASE_URL": url, "Q2C_LOG_LEVEL": "WARNING", **settings}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "collector", "--port", str(port)], env=env
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("collector did not become ready") from None
                time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(60)


def median_seconds(work: Callable[[], object], runs: int = 5) -> float:
    """The median of `runs` timings of `work`, after one untimed warm-up."""
    work()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)

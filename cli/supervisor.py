"""Runs Q2C's long-lived processes (console, collector, scheduler, sandbox) as children,
waits until each answers its health check, and stops them all cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import console
from q2c.errors import Q2CError
from q2c.stop_request import StopRequest

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CLI = __package__ or "cli"  # `python -m cli` starts the collector and the scheduler
HEALTH_TIMEOUT = 60.0  # in seconds
STOP_TIMEOUT = 10.0  # in seconds


@dataclass
class Child:
    """One supervised process: its command and the URL that says it is healthy."""

    name: str
    argv: list[str]
    health_url: str  # empty: healthy while running
    env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None


def streamlit_child(database_url: str, host: str, port: int) -> Child:
    """The Streamlit console, bound to `host:port`, reading `database_url`."""
    app = Path(console.__file__).with_name("streamlit_app.py")
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    return Child(
        name="console",
        argv=argv,
        health_url=f"http://{host}:{port}/_stcore/health",
        env={"DATABASE_URL": database_url},
    )


def collector_child(database_url: str, host: str, port: int) -> Child:
    """The OTLP/HTTP collector on `host:port`, writing into `database_url`."""
    argv = [sys.executable, "-m", CLI, "collector", "--host", host, "--port", str(port)]
    return Child(
        name="collector",
        argv=argv,
        health_url=f"http://{host}:{port}/readyz",
        env={"DATABASE_URL": database_url},
    )


def scheduler_child(database_url: str) -> Child:
    """The SLA scheduler; it has no HTTP port, so it is healthy once it runs."""
    return Child(
        name="scheduler",
        argv=[sys.executable, "-m", CLI, "scheduler"],
        health_url="",
        env={"DATABASE_URL": database_url},
    )


def sandbox_child(
    module: ModuleType,
    collector_url: str,
    port: int,
    rate: float,
    history_days: int,
    options: Sequence[str] = (),
) -> Child:
    """The demo's fake target systems and traffic generator, run as `module` (demo.sandbox,
    which the caller imports: the supervisor itself does not need it), with the module's
    own `options` last."""
    argv = [
        sys.executable,
        "-m",
        module.__name__,
        "--collector",
        collector_url,
        "--port",
        str(port),
        "--rate",
        str(rate),
        "--history-days",
        str(history_days),
        *options,
    ]
    return Child(name="sandbox", argv=argv, health_url=f"http://127.0.0.1:{port}/healthz")


class Supervisor:
    """Starts children in order and stops them in reverse; a stop request ends `wait()`."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self._stop = StopRequest()

    def start(self, child: Child) -> None:
        """Start `child` and return once its health URL answers 200."""
        env = {**os.environ, **child.env}
        child.process = subprocess.Popen(child.argv, cwd=PROJECT_ROOT, env=env)
        self.children.append(child)
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while child.health_url and not _healthy(child.health_url):
            if child.process.poll() is not None:
                raise Q2CError(f"{child.name} exited with code {child.process.returncode}")
            if time.monotonic() > deadline or self._stop.wait(0.2):
                raise Q2CError(f"{child.name} did not become healthy at {child.health_url}")

    def wait(self) -> None:
        """Block until SIGINT/SIGTERM or until a child exits on its own."""
        self._stop.listen()
        while not self._stop.wait(0.5):
            for child in self.children:
                if child.process is not None and child.process.poll() is not None:
                    log.error("%s exited with code %s", child.name, child.process.returncode)
                    return

    def stop(self) -> None:
        """Terminate children in reverse start order, killing any that do not exit in time."""
        for child in reversed(self.children):
            proc = child.process
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %ss; killing it", child.name, STOP_TIMEOUT)
                proc.kill()
                proc.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False

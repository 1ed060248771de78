"""Running the collector for tests: in a thread of the test process, on a free port."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from collectors.app import create_app
from q2c.settings import Settings
from tests.support.peers import free_port

STARTUP_DEADLINE = 30  # in seconds


@contextlib.contextmanager
def running_collector(settings: Settings, database_url: str) -> Iterator[str]:
    """A real HTTP collector on 127.0.0.1; yields its base URL, stops it afterwards."""
    with running_app(create_app(settings, database_url)) as url:
        yield url


@contextlib.contextmanager
def running_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_DEADLINE
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("collector did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(STARTUP_DEADLINE)

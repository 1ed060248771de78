"""`make demo` brings the console up on the embedded database and Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTUP_DEADLINE = 120  # in seconds; a first run initialises the embedded cluster


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def test_make_demo_serves_the_console_and_stops_cleanly(tmp_path: Path) -> None:
    port, collector_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("Q2C_")}
    env |= {
        "Q2C_DATA_DIR": str(tmp_path / "state"),
        "Q2C_CONSOLE_PORT": str(port),
        "Q2C_COLLECTOR_PORT": str(collector_port),
    }
    demo = subprocess.Popen(
        ["make", "--no-print-directory", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        health_url = f"http://127.0.0.1:{port}/_stcore/health"
        deadline = time.monotonic() + STARTUP_DEADLINE
        while (answer := _health(health_url)) is None and demo.poll() is None:
            assert time.monotonic() < deadline, "console did not come up"
            time.sleep(0.5)
        assert answer == "ok"
        collector_ready = _health(f"http://127.0.0.1:{collector_port}/readyz")
        assert collector_ready == '{"status":"ready"}'
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        output, _ = demo.communicate(timeout=60)  # EOF once every process has exited

    text = output.decode()
    assert f"Open the console:   http://127.0.0.1:{port}" in text
    assert f"OTLP/HTTP endpoint: http://127.0.0.1:{collector_port}" in text
    assert text.rstrip().endswith("stopped")
    assert "Traceback" not in text
    assert not (tmp_path / "state" / "pgdata" / "postmaster.pid").exists()

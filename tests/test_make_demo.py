"""`make demo` brings the whole stack up on the embedded database and Ctrl-C stops it all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from tests.support.peers import free_port

ROOT = Path(__file__).resolve().parents[1]
STARTUP_DEADLINE = 180  # in seconds; a first run initialises the embedded cluster


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def test_make_demo_serves_everything_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("console", "collector", "sandbox")}
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("Q2C_")}
    env |= {
        "Q2C_DATA_DIR": str(tmp_path / "state"),
        "Q2C_CONSOLE_PORT": str(ports["console"]),
        "Q2C_COLLECTOR_PORT": str(ports["collector"]),
        "Q2C_DEMO_SANDBOX_PORT": str(ports["sandbox"]),
    }
    demo = subprocess.Popen(
        ["make", "--no-print-directory", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not any("Press Ctrl-C to stop everything" in line for line in lines):
            assert demo.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "the demo never said it was running"
            time.sleep(0.5)
        console = _get(f"http://127.0.0.1:{ports['console']}/_stcore/health")
        collector = _get(f"http://127.0.0.1:{ports['collector']}/readyz")
        sandbox = _get(f"http://127.0.0.1:{ports['sandbox']}/healthz")
        # The CLI, in another terminal, with the two exports the banner prints.
        banner = "".join(lines)
        exports = dict(re.findall(r"export (DATABASE_URL|Q2C_TOKEN)='?([^'\s]+)'?", banner))
        cli = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "q2c"), "dead-letters", "list", "--json"],
            env={**env, **exports},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        demo.wait(60)
        reader.join(60)  # EOF once every process holding the pipe has exited

    text = "".join(lines)
    assert (console, collector, sandbox) == ("ok", '{"status":"ready"}', '{"status":"ok"}')
    assert set(exports) == {"DATABASE_URL", "Q2C_TOKEN"}, text
    assert cli.returncode == 0 and cli.stdout.startswith("["), cli.stdout + cli.stderr
    assert f"Open the console:   http://127.0.0.1:{ports['console']}" in text
    assert f"OTLP/HTTP endpoint: http://127.0.0.1:{ports['collector']}" in text
    for user in ("admin", "finance", "oncall", "cio"):
        assert f"    {user}" in text
    assert text.rstrip().endswith("stopped")
    assert "Traceback" not in text
    assert not (tmp_path / "state" / "pgdata" / "postmaster.pid").exists()

"""The whole demo stack, end to end: a dead letter from the sandbox's traffic is replayed
from the CLI, its exception becomes `replayed`, and the target's success telemetry then
auto-resolves it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
from click.testing import CliRunner

from cli.main import main
from q2c.database import create_db_engine
from q2c.settings import Settings
from queries.tokens import create_token
from tests.support.peers import free_port

DEADLINE = 120  # in seconds, for each condition polled below


def _wait_for(condition, what: str):
    deadline = time.monotonic() + DEADLINE
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return value


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_a_dead_letter_is_replayed_and_then_auto_resolved(
    db_url: str, owner_db_url: str, app_role, db: psycopg.Connection, tmp_path: Path, monkeypatch
) -> None:
    ports = {name: free_port() for name in ("console", "collector", "sandbox")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("Q2C_")}
    env |= {
        "DATABASE_URL": db_url,
        "Q2C_MIGRATION_DATABASE_URL": owner_db_url,
        "Q2C_APP_ROLE": app_role[0],
        "Q2C_DATA_DIR": str(tmp_path),
        "Q2C_LOG_LEVEL": "WARNING",
        "Q2C_CONSOLE_PORT": str(ports["console"]),
        "Q2C_COLLECTOR_PORT": str(ports["collector"]),
        "Q2C_DEMO_SANDBOX_PORT": str(ports["sandbox"]),
        "Q2C_DEMO_RATE": "2",
    }
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: _ready(f"http://127.0.0.1:{ports['console']}/_stcore/health"), "demo")
        letter, exception_id = _wait_for(
            lambda: db.execute(
                "SELECT d.id, d.exception_id FROM dead_letters d JOIN exceptions e "
                "ON e.id = d.exception_id WHERE d.status = 'dead' AND e.status = 'open' "
                "AND d.target_url LIKE %s ORDER BY d.id LIMIT 1",
                (f"http://127.0.0.1:{ports['sandbox']}/%",),
            ).fetchone(),
            "a dead letter from the sandbox's traffic",
        )
        monkeypatch.setenv("DATABASE_URL", db_url)
        monkeypatch.setenv("Q2C_REPLAY_ALLOWED_HOSTS", f"127.0.0.1:{ports['sandbox']}")
        engine = create_db_engine(db_url, Settings(database_url=None))
        token, _ = create_token(engine, "oncall", "oncall")
        engine.dispose()
        requested = CliRunner().invoke(main, ["replay", "request", str(letter), "--token", token])
        assert requested.exit_code == 0 and "queued" in requested.output, requested.output

        status = lambda: db.execute(  # noqa: E731
            "SELECT status FROM exceptions WHERE id = %s", (exception_id,)
        ).fetchone()[0]
        _wait_for(lambda: status() == "auto_resolved", "the exception to auto-resolve")
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(60)

    events = db.execute(
        "SELECT action FROM exception_events WHERE exception_id = %s ORDER BY id", (exception_id,)
    )
    actions = [action for (action,) in events]
    assert actions == ["replay_requested", "replayed", "auto_resolved"]
    assert db.execute(
        "SELECT r.status, r.attempts, d.status FROM replays r JOIN dead_letters d "
        "ON d.id = r.dead_letter_id WHERE d.id = %s",
        (letter,),
    ).fetchone() == ("succeeded", 1, "replayed")

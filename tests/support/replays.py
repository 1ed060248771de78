"""Running replays to the end in tests."""

from __future__ import annotations

import time

import psycopg

from replay.dispatcher import Dispatcher

DEADLINE = 60  # in seconds


def drain(dispatcher: Dispatcher, db: psycopg.Connection) -> None:
    """Run the dispatcher until no replay is pending or delivering (at most DEADLINE)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        dispatcher.run_once()
        active = db.execute(
            "SELECT count(*) FROM replays WHERE status IN ('pending', 'delivering')"
        ).fetchone()[0]
        if not active:
            return
        assert time.monotonic() < deadline, "replays never finished"
        time.sleep(0.02)

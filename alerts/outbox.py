"""Unpacking the outbox: an exception's events are recorded one `alert_outbox` row per
statement, in the transaction of the change (migration 0027); the alerting pass unpacks
them into `alert_events`, one row per event, before it assigns owners and routes.

Unpacking runs with the owner's rights (`q2c_unpack_alert_outbox`: the runtime role may
not delete from the outbox) and under the router's lock, so that events get their ids in
the order they happened, and each outbox row is unpacked once: its deletion commits with
the events it became."""

from __future__ import annotations

import psycopg

BATCHES = 20  # outbox rows (statements) unpacked per call; each may hold thousands of events


def unpack(conn: psycopg.Connection) -> int:
    """Unpack every outbox row committed so far, in the caller's transaction (which holds
    the router's lock); the events written."""
    written = 0
    while True:
        row = conn.execute("SELECT * FROM q2c_unpack_alert_outbox(%s)", (BATCHES,)).fetchone()
        taken, events = row if row else (0, 0)
        written += events
        if taken < BATCHES:
            return written

"""Unpacking the outbox: an exception's events are recorded one `alert_outbox` row per
statement, in the transaction of the change (migration 0027); the alerting pass unpacks
them into `alert_events`, one row per event, before it assigns owners and routes.

Unpacking runs with the owner's rights (`q2c_unpack_alert_outbox`: the runtime role may
not delete from the outbox) and under the router's lock, so that events get their ids in
the order they happened, and each outbox row is unpacked once: its deletion commits with
the events it became."""

from __future__ import annotations

import psycopg

BATCHES = 20  # outbox rows (statements) unpacked per transaction; each may hold thousands


def unpack(conn: psycopg.Connection) -> tuple[int, int]:
    """Unpack the oldest outbox rows (up to BATCHES), in the caller's transaction (which
    holds the router's lock): the rows taken and the events written."""
    row = conn.execute("SELECT * FROM q2c_unpack_alert_outbox(%s)", (BATCHES,)).fetchone()
    return (row[0], row[1]) if row else (0, 0)

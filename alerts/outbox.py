"""Unpacking the outbox: an exception's events are recorded one `alert_outbox` row per
statement, in the transaction of the change (migration 0027); the alerting pass unpacks
them into `alert_events`, one row per event, before it assigns owners and routes.

Unpacking runs with the owner's rights (`q2c_unpack_alert_outbox`: the runtime role may
not delete from the outbox) and under the router's lock, which the function takes itself,
so that events get their ids in the order they happened; each outbox row is unpacked
once, its deletion committing with the events it became."""

from __future__ import annotations

import psycopg

BATCHES = 20  # outbox rows (statements) unpacked per call; each may hold thousands of events


def horizon(conn: psycopg.Connection) -> int:
    """The newest outbox row's id (0 for none): a pass unpacks up to there, so that writers
    that keep adding rows never keep it from routing and delivering."""
    row = conn.execute("SELECT coalesce(max(id), 0) FROM alert_outbox").fetchone()
    return int(row[0]) if row else 0


def unpack(conn: psycopg.Connection, up_to: int | None = None) -> tuple[int, bool]:
    """Unpack the oldest outbox rows (up to BATCHES, of those up to id `up_to`; None: of
    all) in the caller's transaction: the events written, and whether rows up to `up_to`
    remain."""
    row = conn.execute(
        "SELECT written, more FROM q2c_unpack_alert_outbox(%s, %s)", (BATCHES, up_to)
    ).fetchone()
    return (int(row[0]), bool(row[1])) if row else (0, False)

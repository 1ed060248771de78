"""Pruning: deletes the alerting rows older than the retention that are done — delivered,
failed or suppressed notifications, routed events, groups nobody will hear of again, ended
silences — in bounded batches, with the owner's function `q2c_prune_alerts` (migration
0023 says what each kind keeps). Never a pending delivery, an open group nor an active
silence.

Once across replicas: each batch is a transaction holding the pruning lock (a replica that
finds it taken skips the job) and the router's (alerts/run.py), so that nothing is filed
into a group, nor a group flushed, while it is deleted; a routing pass waits for one batch
at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg

from alerts.run import LOCK_KEY as ROUTER_LOCK_KEY
from q2c.pruning import prune_in_batches

PRUNE_LOCK_KEY = 0x51324150  # "Q2AP"
BATCH = 5_000  # rows of each kind deleted per transaction (count)


@dataclass
class PruneReport:
    """Rows deleted by one run; `skipped`: another replica holds the pruning lock."""

    groups: int = 0
    notifications: int = 0
    events: int = 0
    silences: int = 0
    skipped: bool = False

    @property
    def deleted(self) -> int:
        return self.groups + self.notifications + self.events + self.silences


def prune(url: str, retention: timedelta, batch: int = BATCH) -> PruneReport:
    """Delete what is done and older than `retention` (at least a day for the runtime role),
    `batch` rows of each kind per transaction, until less than that is left."""

    def delete(conn: psycopg.Connection) -> tuple[int, ...]:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ROUTER_LOCK_KEY,))
        row = conn.execute(
            "SELECT groups, notifications, events, silences FROM q2c_prune_alerts(%s, %s)",
            (retention, batch),
        ).fetchone()
        return tuple(row) if row else (0, 0, 0, 0)

    totals = prune_in_batches(url, PRUNE_LOCK_KEY, batch, delete)
    if totals is None:
        return PruneReport(skipped=True)
    groups, notifications, events, silences = totals
    return PruneReport(groups, notifications, events, silences)

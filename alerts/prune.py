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

PRUNE_LOCK_KEY = 0x51324150  # "Q2AP"
BATCH = 5_000  # rows of each kind deleted per transaction (count)
MAX_BATCHES = 200  # per run: what is left waits for the next run


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
    report = PruneReport()
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(MAX_BATCHES):
            with conn.transaction():
                taken = conn.execute(
                    "SELECT pg_try_advisory_xact_lock(%s)", (PRUNE_LOCK_KEY,)
                ).fetchone()
                if not (taken and taken[0]):
                    report.skipped = True
                    return report
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (ROUTER_LOCK_KEY,))
                row = conn.execute(
                    "SELECT groups, notifications, events, silences FROM q2c_prune_alerts(%s, %s)",
                    (retention, batch),
                ).fetchone()
            counts = tuple(row) if row else (0, 0, 0, 0)
            report.groups += counts[0]
            report.notifications += counts[1]
            report.events += counts[2]
            report.silences += counts[3]
            if max(counts) < batch:
                break
    return report

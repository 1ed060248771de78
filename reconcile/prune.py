"""Pruning: deletes reconciliation runs finished longer ago than the retention, with their
breaks and accuracy per pair, in bounded batches, with the owner's function
`q2c_prune_reconciliation_runs` (migration 0024). Each reconciliation's latest succeeded
run is kept whatever its age, and a running one is never touched; the exceptions the
breaks opened and the accepted differences are not pruned here.

Once across replicas, in batches (q2c.pruning).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg

from q2c.pruning import prune_in_batches

PRUNE_LOCK_KEY = 0x51325250  # "Q2RP"
BATCH = 50  # runs per transaction (count): each may hold thousands of breaks


@dataclass
class PruneReport:
    """Runs deleted (with their breaks); `skipped`: another replica holds the lock."""

    runs: int = 0
    skipped: bool = False


def prune(url: str, retention: timedelta, batch: int = BATCH) -> PruneReport:
    """Delete the runs finished before `retention` ago (at least a day for the runtime
    role), `batch` runs per transaction, until fewer than that are left."""

    def delete(conn: psycopg.Connection) -> tuple[int, ...]:
        row = conn.execute(
            "SELECT q2c_prune_reconciliation_runs(%s, %s)", (retention, batch)
        ).fetchone()
        return (int(row[0]) if row else 0,)

    totals = prune_in_batches(url, PRUNE_LOCK_KEY, batch, delete)
    return PruneReport(skipped=True) if totals is None else PruneReport(runs=totals[0])

"""Pruning: deletes reconciliation runs finished longer ago than the retention, with their
breaks and accuracy per pair, in bounded batches, with the owner's function
`q2c_prune_reconciliation_runs` (migration 0024). Each reconciliation's latest succeeded
run is kept whatever its age, and a running one is never touched; the exceptions the
breaks opened and the accepted differences are not pruned here.

Once across replicas: each batch is a transaction holding the pruning lock; a replica that
finds it taken skips the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg

PRUNE_LOCK_KEY = 0x51325250  # "Q2RP"
BATCH = 50  # runs per transaction (count): each may hold thousands of breaks
MAX_BATCHES = 200  # per run of the job: what is left waits for the next one


@dataclass
class PruneReport:
    """Runs deleted (with their breaks); `skipped`: another replica holds the lock."""

    runs: int = 0
    skipped: bool = False


def prune(url: str, retention: timedelta, batch: int = BATCH) -> PruneReport:
    """Delete the runs finished before `retention` ago (at least a day for the runtime
    role), `batch` runs per transaction, until fewer than that are left."""
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
                row = conn.execute(
                    "SELECT q2c_prune_reconciliation_runs(%s, %s)", (retention, batch)
                ).fetchone()
            deleted = int(row[0]) if row else 0
            report.runs += deleted
            if deleted < batch:
                break
    return report

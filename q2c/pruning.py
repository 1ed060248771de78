"""Deleting old rows in bounded batches, once across replicas: each batch is a transaction
holding a pruning lock (a replica that finds it taken skips the job) in which one owner's
function deletes at most `batch` rows of each kind it prunes."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

MAX_BATCHES = 200  # per run of a job: what is left waits for the next one


def prune_in_batches(
    url: str,
    lock_key: int,
    batch: int,
    delete: Callable[[psycopg.Connection], tuple[int, ...]],
) -> tuple[int, ...] | None:
    """Call `delete` (rows deleted of each kind, at most `batch` each) in one transaction
    after another until it deletes fewer than `batch` of every kind; the rows deleted of
    each kind, summed, or None when another replica holds `lock_key`."""
    totals: tuple[int, ...] = ()
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(MAX_BATCHES):
            with conn.transaction():
                taken = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (lock_key,)).fetchone()
                if not (taken and taken[0]):
                    return None
                counts = delete(conn)
            totals = tuple(a + b for a, b in zip(totals or (0,) * len(counts), counts, strict=True))
            if max(counts, default=0) < batch:
                break
    return totals

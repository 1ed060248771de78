"""Readers of reconciliation against the systems of record: the runs, newest first, and
the breaks of a run with the records of every source side by side."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from queries.users import allowed_user

MAX_ROWS = 1000  # of one page of runs or breaks

_RUNS = """
SELECT id AS run_id, reconciliation, object, status, started_at, finished_at, source_rows,
       checked, matched, pending,
       CASE WHEN checked > 0 THEN matched::float8 / checked END AS accuracy,
       breaks, error, error_at
FROM reconciliation_runs
WHERE CAST(:reconciliation AS text) IS NULL OR reconciliation = :reconciliation
ORDER BY started_at DESC, id DESC
LIMIT :limit
"""

# Without a run: the latest successful run of each reconciliation.
_BREAKS = """
WITH runs AS (
    SELECT id, reconciliation FROM reconciliation_runs WHERE id = :run_id
    UNION ALL
    (SELECT DISTINCT ON (reconciliation) id, reconciliation FROM reconciliation_runs
     WHERE CAST(:run_id AS bigint) IS NULL AND status = 'succeeded'
     ORDER BY reconciliation, started_at DESC, id DESC)
)
SELECT b.run_id, r.reconciliation, b.key, b.break_type, b.records, b.correlation_id,
       b.exception_id, e.status AS exception_status, b.accepted_id IS NOT NULL AS accepted
FROM runs r
JOIN reconciliation_breaks b ON b.run_id = r.id
LEFT JOIN exceptions e ON e.correlation_id = b.correlation_id AND e.id = b.exception_id
ORDER BY r.reconciliation, b.key, b.break_type
LIMIT :limit
"""


def list_runs(
    engine: Engine, actor: str, reconciliation: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Runs, newest first (at most `limit`, capped at MAX_ROWS), of one reconciliation or
    all; an empty list when there is none."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "reconciliation.view")
        params = {"reconciliation": reconciliation, "limit": _limit(limit)}
        return [dict(row._mapping) for row in conn.execute(text(_RUNS), params)]


def list_breaks(
    engine: Engine, actor: str, run_id: int | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """The breaks of run `run_id` (default: each reconciliation's latest successful run),
    by reconciliation, key and type, with their exception's status now."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "reconciliation.view")
        params = {"run_id": run_id, "limit": _limit(limit)}
        return [dict(row._mapping) for row in conn.execute(text(_BREAKS), params)]


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_ROWS))

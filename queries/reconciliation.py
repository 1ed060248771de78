"""Readers of reconciliation against the systems of record (the runs, newest first; the
accuracy of each run and source pair; the breaks with the records of every source side by
side) and the one command on them: accepting a known difference."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from q2c.errors import Q2CError
from q2c.masking import configured
from queries.audit import record
from queries.exceptions import resolve_in
from queries.users import allowed_user

MAX_ROWS = 1000  # of one page of runs or breaks

_RUNS = """
SELECT id AS run_id, reconciliation, object, status, started_at, finished_at, source_rows,
       checked, matched, pending,
       CASE WHEN checked > 0 THEN matched::float8 / checked END AS accuracy,
       breaks, error, error_at
FROM reconciliation_runs
WHERE (CAST(:reconciliation AS text) IS NULL OR reconciliation = :reconciliation)
  AND (CAST(:run_id AS bigint) IS NULL OR id = :run_id)
ORDER BY started_at DESC, id DESC
LIMIT :limit
"""

# Per succeeded run: the whole (source_a and source_b NULL), then each pair of sources;
# the newest rows within the limit, shown oldest first.
_ACCURACY = """
SELECT * FROM (
SELECT r.id AS run_id, r.reconciliation, r.started_at, p.source_a, p.source_b, p.checked,
       p.matched, CASE WHEN p.checked > 0 THEN p.matched::float8 / p.checked END AS accuracy
FROM reconciliation_runs r
CROSS JOIN LATERAL (
    SELECT NULL::text AS source_a, NULL::text AS source_b, r.checked, r.matched
    UNION ALL
    SELECT a.source_a, a.source_b, a.checked, a.matched
    FROM reconciliation_accuracy a WHERE a.run_id = r.id
) p
WHERE r.status = 'succeeded'
  AND (CAST(:reconciliation AS text) IS NULL OR r.reconciliation = :reconciliation)
  AND (CAST(:since AS timestamptz) IS NULL OR r.started_at >= :since)
ORDER BY r.started_at DESC, r.id DESC, p.source_a NULLS FIRST, p.source_b
LIMIT :limit
) newest
ORDER BY reconciliation, started_at, run_id, source_a NULLS FIRST, source_b
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
       b.exception_id, e.status AS exception_status, a.id IS NOT NULL AS accepted
FROM runs r
JOIN reconciliation_breaks b ON b.run_id = r.id
LEFT JOIN exceptions e ON e.correlation_id = b.correlation_id AND e.id = b.exception_id
LEFT JOIN reconciliation_acceptances a
       ON a.reconciliation = r.reconciliation AND a.key = b.key
      AND a.break_type = b.break_type AND a.records_hash = b.records_hash
WHERE (CAST(:reconciliation AS text) IS NULL OR r.reconciliation = :reconciliation)
  AND (CAST(:kind AS text) IS NULL OR split_part(b.break_type, ':', 1) = :kind)
  AND (CAST(:field AS text) IS NULL OR b.break_type = 'mismatch:' || :field)
  AND (CAST(:search AS text) IS NULL OR b.key ILIKE '%' || :search || '%')
ORDER BY r.reconciliation, b.key, b.break_type
LIMIT :limit
"""

_BREAK = """
SELECT b.run_id, r.reconciliation, r.object, r.started_at, b.key, b.break_type, b.records,
       b.records_hash, b.correlation_id, b.exception_id, a.id AS accepted_id,
       e.status AS exception_status, e.message AS exception_message, e.owner AS exception_owner,
       e.resolution AS exception_resolution, e.impact AS exception_impact,
       t.correlation_id IS NOT NULL AS has_transaction, t.process AS transaction_process,
       a.reason AS accepted_reason, a.accepted_by, a.accepted_at,
       ARRAY(SELECT split_part(m.break_type, ':', 2) FROM reconciliation_breaks m
             WHERE m.run_id = b.run_id AND m.key = b.key AND m.break_type LIKE 'mismatch:%'
             ORDER BY m.break_type) AS differing
FROM reconciliation_breaks b
JOIN reconciliation_runs r ON r.id = b.run_id
LEFT JOIN exceptions e ON e.correlation_id = b.correlation_id AND e.id = b.exception_id
LEFT JOIN transactions t ON t.correlation_id = b.correlation_id
LEFT JOIN reconciliation_acceptances a
       ON a.reconciliation = r.reconciliation AND a.key = b.key
      AND a.break_type = b.break_type AND a.records_hash = b.records_hash
WHERE b.run_id = :run_id AND b.key = :key AND b.break_type = :break_type
"""


@dataclass(frozen=True)
class BreakFilter:
    """Which breaks to list: of one run (default: each reconciliation's latest successful
    run), one reconciliation, one kind (`missing_in`, `duplicate_in`, `mismatch`), one
    mismatched field, keys containing `search`; None or "" for any."""

    run_id: int | None = None
    reconciliation: str | None = None
    kind: str | None = None
    field: str | None = None
    search: str | None = None


@dataclass(frozen=True)
class Acceptance:
    """What accepting a difference did: the acceptance recorded and the exception it
    resolved (None when the break had none open)."""

    acceptance_id: int
    resolved_exception_id: int | None


def list_runs(
    engine: Engine,
    actor: str,
    reconciliation: str | None = None,
    limit: int = 50,
    run_id: int | None = None,
) -> list[dict[str, Any]]:
    """Runs, newest first (at most `limit`, capped at MAX_ROWS), of one reconciliation or
    all (or the one run `run_id`); an empty list when there is none. A failure's reason
    and place are masked: a source may name a URL with its credentials."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "reconciliation.view")
        params = {"reconciliation": reconciliation, "limit": _limit(limit), "run_id": run_id}
        masking = configured()
        return [masking.row(run, ("error", "error_at")) for run in _rows(conn, _RUNS, params)]


def reconciliation_names(engine: Engine, actor: str) -> list[str]:
    """Every reconciliation that has run, by name."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "reconciliation.view")
        query = text("SELECT DISTINCT reconciliation FROM reconciliation_runs ORDER BY 1")
        return list(conn.execute(query).scalars())


def accuracy_trend(
    engine: Engine,
    actor: str,
    reconciliation: str | None = None,
    since: datetime | None = None,
    limit: int = MAX_ROWS,
) -> list[dict[str, Any]]:
    """The accuracy of each succeeded run (since `since`), oldest first: per run one row
    for the whole (`source_a` and `source_b` None), then one per pair of sources. Past
    `limit` rows, the newest are kept."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "reconciliation.view")
        params = {"reconciliation": reconciliation, "since": since, "limit": _limit(limit)}
        return _rows(conn, _ACCURACY, params)


def list_breaks(
    engine: Engine,
    actor: str,
    run_id: int | None = None,
    limit: int = 500,
    filters: BreakFilter | None = None,
) -> list[dict[str, Any]]:
    """The breaks of run `run_id` (default: each reconciliation's latest successful run)
    that `filters` select, by reconciliation, key and type, with their exception's status
    now and whether an acceptance covers their records now (`accepted`)."""
    f = filters or BreakFilter(run_id=run_id)
    with engine.connect() as conn:
        allowed_user(conn, actor, "reconciliation.view")
        params = {
            "run_id": run_id if run_id is not None else f.run_id,
            "reconciliation": f.reconciliation or None,
            "kind": f.kind or None,
            "field": f.field or None,
            "search": f.search or None,
            "limit": _limit(limit),
        }
        return _rows(conn, _BREAKS, params)


def break_detail(
    engine: Engine, actor: str, run_id: int, key: str, break_type: str
) -> dict[str, Any] | None:
    """One break: its records side by side (source → [record, …]), the fields the run
    found differing for its key (`differing`), its exception, the transaction it is linked
    to (`has_transaction`) and its acceptance, if any; None when there is no such break."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "reconciliation.view")
        rows = _rows(conn, _BREAK, {"run_id": run_id, "key": key, "break_type": break_type})
        return rows[0] if rows else None


def accept_difference(
    engine: Engine, actor: str, run_id: int, key: str, break_type: str, reason: str
) -> Acceptance:
    """Accept a break as a known difference, with the reason: the acceptance is recorded
    (the engine raises the break no more while the records are unchanged), the break's
    open exception is resolved with the reason, and the audit log says who and why, in
    one transaction."""
    if not reason.strip():
        raise Q2CError("accepting a difference needs a reason")
    with engine.begin() as conn:
        user = allowed_user(conn, actor, "reconciliation.accept")
        found = conn.execute(
            text(
                "SELECT b.records_hash, b.exception_id, r.reconciliation "
                "FROM reconciliation_breaks b JOIN reconciliation_runs r ON r.id = b.run_id "
                "WHERE b.run_id = :run_id AND b.key = :key AND b.break_type = :break_type"
            ),
            {"run_id": run_id, "key": key, "break_type": break_type},
        ).one_or_none()
        if found is None:
            raise Q2CError(f"run {run_id} has no break {break_type} for {key}")
        # Two at once: the second's insert waits on the first's, then finds it (conflict).
        acceptance_id = conn.execute(
            text(
                "INSERT INTO reconciliation_acceptances (reconciliation, key, break_type, "
                "records_hash, reason, accepted_by) VALUES (:r, :key, :bt, :h, :reason, :by) "
                "ON CONFLICT (reconciliation, key, break_type, records_hash) DO NOTHING "
                "RETURNING id"
            ),
            {
                "r": found.reconciliation,
                "key": key,
                "bt": break_type,
                "h": found.records_hash,
                "reason": reason,
                "by": user.username,
            },
        ).scalar_one_or_none()
        if acceptance_id is None:
            raise Q2CError(f"the break {break_type} of {key} is already accepted")
        resolved = None
        if found.exception_id is not None:
            closed = resolve_in(conn, user.username, [found.exception_id], reason)
            resolved = found.exception_id if closed.changed else None
        record(
            conn,
            user.username,
            "reconciliation.accepted",
            object_type="reconciliation_break",
            object_id=f"{run_id}/{key}/{break_type}",
            detail={
                "reconciliation": found.reconciliation,
                "key": key,
                "break_type": break_type,
                "reason": reason,
                "acceptance_id": acceptance_id,
                "resolved_exception_id": resolved,
            },
        )
        return Acceptance(acceptance_id, resolved)


def _rows(conn: Connection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in conn.execute(text(sql), params)]


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_ROWS))

"""One SLA evaluation: the window of stage events committed since the last one, turned into
rollups, reconciliation results, stalled-transaction exceptions, regressions and classified
exceptions; and ignores whose date has passed, ended.

Exactly once across replicas: the evaluation holds a transaction-scoped advisory lock (a
second evaluator skips), reads and advances its watermark in the same transaction, and
records its window in job_runs, whose key refuses a window done twice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

from q2c.catalog import INSERT_CATALOG, Process, stage_rows
from sla import _sql
from sla.policy import Policy

log = logging.getLogger(__name__)

JOB = "evaluate"
LOCK_KEY = 0x51_32_43_45  # "Q2CE"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STALLS_REDATED = "stalls dated from when they became due"  # a watermark set once


@dataclass
class EvaluationReport:
    """What one evaluation did (all zero and `skipped` when another evaluator held the lock)."""

    skipped: bool = False
    window_start: datetime | None = None
    window_end: datetime | None = None
    transactions: int = 0
    pairs_counted: int = 0
    errors_counted: int = 0
    reconciled: int = 0
    mismatched: int = 0
    reconciliation_exceptions: int = 0
    stalled: int = 0
    regressed: int = 0
    ignores_ended: int = 0
    classified: int = 0

    def summary(self) -> str:
        """One line per step, for `q2c sla evaluate`."""
        if self.skipped:
            return "another evaluator is running; nothing done"
        return "\n".join(
            [
                f"window {self.window_start:%Y-%m-%d %H:%M:%S} → {self.window_end:%H:%M:%S} UTC:"
                f" {self.transactions} transaction(s) changed",
                f"rollups: {self.pairs_counted} stage pair(s) and markers, "
                f"{self.errors_counted} error bucket(s) updated",
                f"reconciliation: {self.reconciled} checked, {self.mismatched} mismatched, "
                f"{self.reconciliation_exceptions} new exception(s)",
                f"stalled: {self.stalled} new exception(s)",
                f"regressed: {self.regressed} new exception(s) of failures resolved before",
                f"ignores ended: {self.ignores_ended} (their date passed)",
                f"classified: {self.classified} exception(s) given impact and due time",
            ]
        )


def evaluate(
    conn: psycopg.Connection, policy: Policy, now: datetime | None = None
) -> EvaluationReport:
    """Run one evaluation on `conn` (autocommit) and return what it did."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        cur = conn.cursor()
        if not _one(cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,)))[0]:
            return EvaluationReport(skipped=True)
        catalog = policy.catalog()
        _load_policy(cur, policy, catalog)
        lower = _watermark(cur)
        (upper,) = _one(cur.execute(_sql.HORIZON))
        report = EvaluationReport(window_start=lower, window_end=max(upper, lower))
        if upper > lower:  # nothing committed since the last window: no window to do
            _evaluate_window(cur, policy, report, {"lower": lower, "upper": upper})
        _redate_open_stalls_once(cur, policy)
        shortest = min(wait for process in catalog for wait in process.stalled_after)
        report.stalled = _one(cur.execute(_sql.DETECT_STALLED, {"now": now, "shortest": shortest}))[
            0
        ]
        cur.execute(_sql.RESOLVE_ARRIVED_STALLS)
        report.regressed = cur.execute(_sql.MARK_REGRESSIONS).rowcount  # before _classify
        report.ignores_ended = cur.execute(_sql.END_EXPIRED_IGNORES, {"now": now}).rowcount
        report.classified = _classify(cur, policy)
        if upper > lower:
            cur.execute(
                "INSERT INTO job_runs (job, window_start, window_end, finished_at, detail) "
                "VALUES (%s, %s, %s, now(), %s)",
                (JOB, lower, upper, Jsonb(_detail(report))),
            )
            cur.execute(
                "INSERT INTO watermarks (name, value) VALUES (%s, %s) ON CONFLICT (name) "
                "DO UPDATE SET value = excluded.value, updated_at = now()",
                (JOB, upper),
            )
    log.info("evaluated %s", _detail(report))
    return report


def _evaluate_window(
    cur: psycopg.Cursor, policy: Policy, report: EvaluationReport, window: dict[str, datetime]
) -> None:
    """Rollups, error counts, closed counts and reconciliation of the changes in `window`."""
    report.transactions = cur.execute(_sql.AFFECTED, window).rowcount
    report.pairs_counted = cur.execute(_sql.FRESH_PAIRS).rowcount
    cur.execute(_sql.ADD_TO_ROLLUPS)
    report.errors_counted = cur.execute(_sql.ADD_ERRORS, window).rowcount
    cur.execute(_sql.COUNT_CLOSED, window)
    checked, mismatched, opened = _one(
        cur.execute(_sql.RECONCILE, {"tolerance": policy.amount_tolerance})
    )
    report.reconciled, report.mismatched = checked, mismatched
    report.reconciliation_exceptions = opened
    cur.execute(_sql.RESOLVE_RECONCILED)


def _detail(report: EvaluationReport) -> dict:
    return {k: v for k, v in asdict(report).items() if not isinstance(v, datetime)}


def _watermark(cur: psycopg.Cursor) -> datetime:
    row = cur.execute("SELECT value FROM watermarks WHERE name = %s", (JOB,)).fetchone()
    return row[0] if row else _EPOCH


def _load_policy(cur: psycopg.Cursor, policy: Policy, catalog: tuple[Process, ...]) -> None:
    cur.execute(_sql.POLICY_TABLES)
    cur.executemany(INSERT_CATALOG, stage_rows(catalog))
    fields = [(p, f) for p, spec in policy.processes.items() for f in spec.reconcile]
    if fields:
        cur.executemany("INSERT INTO _reconcile VALUES (%s, %s)", fields)


def _redate_open_stalls_once(cur: psycopg.Cursor, policy: Policy) -> None:
    """Date the open stalls of earlier versions from when they became due, and work out
    the impact and due time of those classified already again, once per database (a
    watermark records it)."""
    marker = cur.execute(
        "INSERT INTO watermarks (name, value) VALUES (%s, now()) ON CONFLICT (name) DO NOTHING",
        (_STALLS_REDATED,),
    )
    if marker.rowcount:
        redated = cur.execute(_sql.REDATE_OPEN_STALLS).fetchall()
        classified = [row[:-1] for row in redated if row[-1]]
        if classified:
            _classify_rows(cur, policy, classified)
        log.info("dated %d open stall(s) from when they became due", len(redated))


def _classify(cur: psycopg.Cursor, policy: Policy) -> int:
    """Give new exceptions their impact (the policy's rules) and due time."""
    rows = cur.execute(_sql.UNCLASSIFIED).fetchall()
    if rows:
        _classify_rows(cur, policy, rows)
    return len(rows)


def _classify_rows(cur: psycopg.Cursor, policy: Policy, rows: list[tuple]) -> None:
    """Give the exceptions of `rows` (as UNCLASSIFIED answers) their impact and due time."""
    ids, correlation_ids, impacts, due = [], [], [], []
    for exc_id, correlation_id, process, stage, kind, amount, first_seen in rows:
        impact = policy.impact_of(process, stage, kind, amount)
        ids.append(exc_id)
        correlation_ids.append(correlation_id)
        impacts.append(impact)
        due.append(first_seen + policy.impact_due[impact])
    cur.execute(
        _sql.CLASSIFY,
        {"ids": ids, "correlation_ids": correlation_ids, "impacts": impacts, "due": due},
    )


def _one(cur: psycopg.Cursor) -> tuple:
    """The one row a statement that always answers one row answered."""
    row = cur.fetchone()
    assert row is not None, "the statement answered no row"
    return tuple(row)

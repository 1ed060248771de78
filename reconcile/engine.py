"""One run of one reconciliation: read every source into staging tables, compare them
set-wise (reconcile._sql), record the run, its breaks and its accuracy per source pair,
open an exception per new break and resolve those whose break is gone.

A run is first recorded as `running` (committed: it is seen while it works); its loading
and comparison happen in one transaction, which a failure (a source's SourceError, a value
that does not cast) rolls back: the run is then recorded as failed with the reason and the
place at fault, and has recorded no break and closed no exception. Two schedulers never run
the same reconciliation at once: a run holds a session advisory lock on the reconciliation
(a session's, not a transaction's, since a run spans two transactions); a second one skips.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from q2c.errors import first_line
from q2c.vocabulary import records_stage
from reconcile import _sql
from reconcile.config import UPDATED_AT, Reconciliation
from reconcile.sources import SourceError, StagingTable

log = logging.getLogger(__name__)

LOCK_CLASS = 0x51_32_43_52  # "Q2CR"; the second key is the reconciliation's name, hashed
RunStatus = Literal["succeeded", "failed", "skipped"]
_CAST_TYPES = {"numeric": "a number", "timestamptz": "a timestamp"}


@dataclass
class RunReport:
    """What one run did (`skipped`, with no run recorded, when another held the lock)."""

    reconciliation: str
    status: RunStatus
    run_id: int | None = None
    checked: int = 0
    matched: int = 0
    pending: int = 0
    breaks: dict[str, int] = field(default_factory=dict)
    source_rows: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    error_at: str | None = None

    @property
    def accuracy(self) -> float | None:
        """matched / checked; None when nothing was checked."""
        return self.matched / self.checked if self.checked else None

    def summary(self) -> str:
        """One line saying what the run did, as `q2c reconcile run` prints and the log."""
        name, status = self.reconciliation, self.status
        if status == "skipped":
            return f"{name}: another run holds the lock; skipped"
        if status == "failed":
            at = f" at {self.error_at}" if self.error_at else ""
            return f"{name}: run {self.run_id} failed: {self.error}{at}"
        shown = "n/a" if self.accuracy is None else f"{self.accuracy:.2%}"
        breaks = ", ".join(f"{kind} {count}" for kind, count in self.breaks.items())
        return (
            f"{name}: run {self.run_id}: {self.checked} checked, {self.matched} matched, "
            f"{self.pending} pending, accuracy {shown}; breaks: {breaks or 'none'}"
        )

    def document(self) -> dict[str, Any]:
        """The JSON object `q2c reconcile run --json` prints."""
        shown: dict[str, Any] = {
            "run_id": self.run_id,
            "reconciliation": self.reconciliation,
            "status": self.status,
            "checked": self.checked,
            "matched": self.matched,
            "pending": self.pending,
            "accuracy": self.accuracy,
            "breaks": self.breaks,
        }
        if self.error:
            shown["error"] = self.error
            shown["error_at"] = self.error_at
        return shown


def run_reconciliation(
    conn: psycopg.Connection,
    name: str,
    recon: Reconciliation,
    environ: Mapping[str, str],
    now: datetime | None = None,
) -> RunReport:
    """Run reconciliation `name` on `conn` (autocommit) and say what it did."""
    now = now or datetime.now(UTC)
    lock = (LOCK_CLASS, name)
    if not _one(conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", lock))[0]:
        log.info("reconcile %s: another run holds the lock; skipped", name)
        return RunReport(name, "skipped")
    try:
        run_id = _start(conn, name, recon)
        try:
            with conn.transaction():
                report = _run(conn, run_id, name, recon, environ, now)
        except SourceError as exc:
            return _failed(conn, run_id, name, exc.reason, exc.at)
        except psycopg.Error as exc:
            if conn.closed or conn.broken:
                raise
            log.exception("reconcile %s: run %s failed", name, run_id)
            return _failed(conn, run_id, name, first_line(exc), None)
        except Exception:  # a bug: the run is not left running; the caller logs the trace
            _failed(conn, run_id, name, "internal error (see the scheduler's log)", None)
            raise
        log.info("reconcile %s", report.summary())
        return report
    finally:
        if not (conn.closed or conn.broken):
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", lock)


def _start(conn: psycopg.Connection, name: str, recon: Reconciliation) -> int:
    """Record the run as running (committed); a run left running by a process that died is
    failed first, which only the lock's holder may tell."""
    conn.execute(
        "UPDATE reconciliation_runs SET status = 'failed', finished_at = clock_timestamp(), "
        "error = 'interrupted: the process running it stopped' "
        "WHERE reconciliation = %s AND status = 'running'",
        (name,),
    )
    return int(
        _one(
            conn.execute(
                "INSERT INTO reconciliation_runs (reconciliation, object) VALUES (%s, %s) "
                "RETURNING id",
                (name, recon.object),
            )
        )[0]
    )


def _failed(
    conn: psycopg.Connection, run_id: int, name: str, reason: str, at: str | None
) -> RunReport:
    conn.execute(
        "UPDATE reconciliation_runs SET status = 'failed', finished_at = clock_timestamp(), "
        "error = %s, error_at = %s WHERE id = %s",
        (reason, at, run_id),
    )
    log.warning(
        "reconcile %s: run %s failed: %s%s", name, run_id, reason, f" at {at}" if at else ""
    )
    return RunReport(name, "failed", run_id=run_id, error=reason, error_at=at)


def _run(
    conn: psycopg.Connection,
    run_id: int,
    name: str,
    recon: Reconciliation,
    environ: Mapping[str, str],
    now: datetime,
) -> RunReport:
    cur = conn.cursor()
    cur.execute(f"SET LOCAL work_mem = '{_sql.WORK_MEM}'")
    cur.execute("SET LOCAL jit = off")
    columns = recon.fields()
    provided, rows = [], {}
    for n, (source_name, source) in enumerate(recon.sources.items()):
        cur.execute(_sql.create_staging(columns, n))
        try:
            loaded = source.load(StagingTable(cur, _sql.staging(n), columns), environ)
        except SourceError as exc:
            raise SourceError(f"source {source_name}: {exc.reason}", exc.at) from None
        provided.append(frozenset(loaded.provided))
        rows[source_name] = loaded.rows
    plan = _sql.Plan(
        name=name,
        key=recon.key,
        columns=columns,
        numeric=frozenset(c for c in columns if recon.numeric(c)),
        sources=tuple(recon.sources),
        provided=tuple(provided),
        maps={
            f: tuple(c.mapped(s) for s in recon.sources) for f, c in recon.compare.items() if c.map
        },
        compared={f: c.tolerance for f, c in recon.compare.items()},
    )
    stage = records_stage(name)
    cur.execute(_sql.OPEN_KEYS, {"stage": stage})
    checked, matched, pending, pairs = _judge(
        cur, plan, now, recon.scope.updated_within, recon.grace
    )
    cur.executemany(
        "INSERT INTO reconciliation_accuracy (run_id, source_a, source_b, checked, matched) "
        "VALUES (%s, %s, %s, %s, %s)",
        [(run_id, plan.sources[a], plan.sources[b], *figures) for (a, b), figures in pairs],
    )
    cur.execute(_sql.breaks(plan))
    cur.execute(_sql.records(plan))
    names = {"name": name, "object": recon.object, "stage": stage}
    cur.execute(_sql.linked_breaks(plan, recon.object), names)
    cur.execute("ANALYZE _b")  # joined with exceptions next: the planner needs its size
    cur.execute(_sql.OPEN_EXCEPTIONS, {**names, "now": now})
    cur.execute(_sql.RECORD_BREAKS, {"run_id": run_id})
    cur.execute(_sql.AUTO_RESOLVE, {"run_id": run_id, "stage": stage})
    breaks = {kind: count for kind, count in cur.execute(_sql.BREAK_COUNTS).fetchall()}
    cur.execute(
        "UPDATE reconciliation_runs SET status = 'succeeded', finished_at = clock_timestamp(), "
        "source_rows = %s, checked = %s, matched = %s, pending = %s, breaks = %s WHERE id = %s",
        (Jsonb(rows), checked, matched, pending, Jsonb(breaks), run_id),
    )
    return RunReport(name, "succeeded", run_id, checked, matched, pending, breaks, source_rows=rows)


def _judge(
    cur: psycopg.Cursor,
    plan: _sql.Plan,
    now: datetime,
    updated_within: timedelta | None,
    grace: timedelta,
) -> tuple[int, int, int, list[tuple[tuple[int, int], tuple[int, int]]]]:
    """Reach a verdict per key (`quick` for most, `verdicts` for the rest): checked,
    matched, pending and the figures of each pair of sources; SourceError naming the
    record when a value does not cast, or a record has no key."""
    window = {
        # Without a scope, every record is in it; compared all the same, so that every
        # updated_at is cast, and one that does not cast fails the run.
        "scope_from": now - updated_within if updated_within else "-infinity",
        "settled_before": now - grace,
    }
    cur.execute(_sql.CREATE_KEYS)
    try:
        with cur.connection.transaction():  # a savepoint: the bad value is found after it
            (quick,) = _one(cur.execute(_sql.quick(plan), window))
            cur.execute("ANALYZE _slow")  # joined with every record next
            for n in range(len(plan.sources)):
                cur.execute(_sql.create_slow_staging(plan, n))
            cur.execute(_sql.create_broken(plan), window)
            checked, matched, pending, keyless, *pair_counts = _one(
                cur.execute(_sql.judge(plan), window)
            )
    except psycopg.errors.DataError:
        _name_uncastable(cur, plan)
        raise
    if keyless is not None:
        (at,) = _one(cur.execute(_sql.keyless(plan, keyless)))
        raise SourceError(f"source {plan.sources[keyless]}: a record without {plan.key}", at)
    # A key `quick` matched is checked and agreed on by every pair of sources.
    pairs = [
        (pair, (pair_counts[2 * i] + quick, pair_counts[2 * i + 1] + quick))
        for i, pair in enumerate(plan.pairs())
    ]
    return checked + quick, matched + quick, pending, pairs


def _name_uncastable(cur: psycopg.Cursor, plan: _sql.Plan) -> None:
    """Raise SourceError naming the first value that does not cast."""
    cur.execute(_sql.CASTABLE)
    for n, source in enumerate(plan.sources):
        typed = [(f, "numeric") for f in plan.values if f in plan.numeric]
        for field_name, type_ in [*typed, (UPDATED_AT, "timestamptz")]:
            if field_name not in plan.provided[n]:
                continue
            found = cur.execute(_sql.uncastable(n, field_name, type_)).fetchone()
            if found:
                at, value = found
                raise SourceError(
                    f"source {source}: {field_name} {value!r} is not {_CAST_TYPES[type_]}", at
                )


def _one(cur: psycopg.Cursor) -> tuple:
    row = cur.fetchone()
    assert row is not None, "the statement answered no row"
    return tuple(row)

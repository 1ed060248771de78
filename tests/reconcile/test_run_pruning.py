"""Pruning deletes the reconciliation runs finished before the retention, with their breaks
and accuracy per pair, in batches, once across replicas; never a reconciliation's latest
succeeded run, nor the exceptions the breaks opened."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from reconcile.prune import PRUNE_LOCK_KEY, prune
from tests.support.reconciling import billing, erp

RETENTION = timedelta(days=30)


def _count(db: psycopg.Connection, query: str) -> int:
    row = db.execute(query).fetchone()
    return int(row[0]) if row else 0


def _age(db: psycopg.Connection, run_ids: list[int], days: int) -> None:
    db.execute(
        "UPDATE reconciliation_runs SET started_at = started_at - make_interval(days => %s), "
        "finished_at = finished_at - make_interval(days => %s) WHERE id = ANY(%s)",
        (days, days, run_ids),
    )


@pytest.fixture
def three_runs(db, exports, reconcile) -> list[int]:
    """Three succeeded runs of the same snapshot, each recording INV-2's break."""
    exports([billing("INV-1"), billing("INV-2")], [erp("INV-1")])
    runs = [reconcile().run_id for _ in range(3)]
    assert None not in runs
    return [run for run in runs if run is not None]


def test_runs_past_the_retention_go_with_their_breaks_and_the_exception_stays(
    db, db_url: str, three_runs: list[int]
) -> None:
    _age(db, three_runs[:2], 40)

    report = prune(db_url, RETENTION)

    assert (report.runs, report.skipped) == (2, False)
    assert db.execute("SELECT id FROM reconciliation_runs").fetchall() == [(three_runs[2],)]
    assert db.execute("SELECT DISTINCT run_id FROM reconciliation_breaks").fetchall() == [
        (three_runs[2],)
    ]
    assert db.execute("SELECT DISTINCT run_id FROM reconciliation_accuracy").fetchall() == [
        (three_runs[2],)
    ]
    assert _count(db, "SELECT count(*) FROM exceptions WHERE q2c_is_open(status)") == 1


def test_the_latest_succeeded_run_is_kept_however_old_and_batches_add_up(
    db, db_url: str, three_runs: list[int], exports, reconcile
) -> None:
    exports([billing("INV-1")], [{"amount": "1.00"}])  # an ERP record without its key
    failed = reconcile()
    assert failed.status == "failed" and failed.run_id is not None
    _age(db, [*three_runs, failed.run_id], 40)

    report = prune(db_url, RETENTION, batch=1)

    assert report.runs == 3  # the two older succeeded runs and the failed one, one a batch
    assert db.execute("SELECT id FROM reconciliation_runs").fetchall() == [(three_runs[2],)]
    assert _count(db, "SELECT count(*) FROM reconciliation_breaks") == 1


def test_the_runtime_role_keeps_runs_a_day_at_least_and_cannot_delete_them_itself(
    db, db_url: str, three_runs: list[int]
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="kept at least a day"):
        prune(db_url, timedelta(hours=1))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("DELETE FROM reconciliation_breaks")


def test_a_replica_finding_the_pruning_lock_taken_skips(
    db, db_url: str, three_runs: list[int]
) -> None:
    _age(db, three_runs[:2], 40)
    with psycopg.connect(db_url) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (PRUNE_LOCK_KEY,))
        report = prune(db_url, RETENTION)

    assert (report.runs, report.skipped) == (0, True)
    assert _count(db, "SELECT count(*) FROM reconciliation_runs") == 3

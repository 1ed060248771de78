"""The writer's derived-row statements find the batch's rows by key, so the cost of storing
a batch follows the batch and never the size of the tables it updates."""

from __future__ import annotations

import psycopg
import pytest

from collectors import _sql
from collectors.writer import PostgresWriter
from sla.policy import load_policy

_DERIVED = {
    "UPSERT_TRANSACTIONS": _sql.UPSERT_TRANSACTIONS,
    "SYNC_EXCEPTION_CONTEXT": _sql.SYNC_EXCEPTION_CONTEXT,
    "DERIVE_EXCEPTIONS": _sql.DERIVE_EXCEPTIONS,
    "ENRICH_OCCURRENCES": _sql.ENRICH_OCCURRENCES,
    "UPSERT_STAGE_EVENTS": _sql.UPSERT_STAGE_EVENTS,
    "INSERT_DEAD_LETTERS": _sql.INSERT_DEAD_LETTERS,
}

# 20,000 earlier transactions, each with a stage row and every tenth with an exception
# (and its failure).
_HISTORY = """
INSERT INTO stage_events (correlation_id, stage, system, process, reached_at, status, last_ok_at)
SELECT 'C-' || g, 'invoice', 'erp', 'order_to_cash', now(), 'ok', now()
FROM generate_series(1, 20000) g;
INSERT INTO transactions (correlation_id, process, current_stage, invoice_id)
SELECT 'C-' || g, 'order_to_cash', 'invoice', 'INV-' || g FROM generate_series(1, 20000) g;
INSERT INTO exceptions (correlation_id, stage, system, kind, fingerprint, error_type, message,
                        first_seen, last_seen)
SELECT 'C-' || g, 'invoice', 'erp', 'error', 'fp', 'E', 'm', now(), now()
FROM generate_series(1, 20000, 10) g;
INSERT INTO exception_occurrences (correlation_id, record_key, exception_id, stage, fingerprint,
                                   kind, occurred_at)
SELECT correlation_id, int8send(id), id, stage, fingerprint, kind, first_seen FROM exceptions;
ANALYZE stage_events, transactions, exceptions, exception_occurrences;
"""

# A batch of 200 observations (half of them failures), as the writer stages them.
_BATCH = """
INSERT INTO _new_obs (record_key, correlation_id, process, stage, system, at_ns, ok, business,
                      fingerprint, dead_letter)
SELECT int8send(g), 'C-' || g, 'order_to_cash', 'invoice', 'erp', 0, g % 2 = 0, '{}', 'fp', false
FROM generate_series(19801, 20000) g
"""


@pytest.mark.parametrize("name", sorted(_DERIVED))
def test_derived_statement_never_scans_a_whole_table(db: psycopg.Connection, name: str) -> None:
    db.execute(_HISTORY)
    db.execute(_sql.STAGING)
    with db.transaction():
        db.execute(_BATCH)
        plan = "\n".join(row[0] for row in db.execute("EXPLAIN " + _DERIVED[name]))
    for table in ("stage_events", "transactions", "exceptions", "exception_occurrences"):
        assert f"Seq Scan on {table} " not in plan, plan
    for index in ("exceptions_triage_idx", "exceptions_kind_window_idx"):  # ranges, not keys
        assert index not in plan, plan


# One transaction failing 5,000 times at one stage, never succeeding (a retry storm).
_STORM = """
INSERT INTO exceptions (correlation_id, stage, system, kind, fingerprint, error_type, message,
                        first_seen, last_seen, occurrences)
VALUES ('STORM', 'invoice', 'erp', 'error', 'fp', 'E', 'm', 'epoch', 'epoch', 5000);
INSERT INTO exception_occurrences (correlation_id, record_key, exception_id, stage, fingerprint,
                                   kind, occurred_at)
SELECT 'STORM', int8send(g), (SELECT id FROM exceptions), 'invoice', 'fp', 'error', 'epoch'
FROM generate_series(1, 5000) g;
INSERT INTO _new_obs (record_key, correlation_id, process, stage, system, at_ns, ok, business,
                      fingerprint, dead_letter)
VALUES ('\\x00', 'STORM', 'order_to_cash', 'invoice', 'erp', 1000, false, '{}', 'fp', false);
"""


def test_one_more_failure_does_not_read_the_earlier_ones(db: psycopg.Connection) -> None:
    db.execute(_sql.STAGING)
    with db.transaction():
        db.execute(_STORM)
        plan = db.execute("EXPLAIN (ANALYZE, COSTS OFF) " + _sql.DERIVE_EXCEPTIONS).fetchall()
        stored = db.execute("SELECT occurrences FROM exceptions").fetchall()
    lines = [row[0] for row in plan]
    reads = [line for line in lines if "Scan on exception_occurrences" in line]
    assert reads and all("never executed" in line for line in reads), "\n".join(lines)
    assert stored == [(5001,)]


def test_writer_statements_are_never_jit_compiled(
    db_url: str, owner_db: psycopg.Connection
) -> None:
    """Compiling the derived-row statements costs hundreds of milliseconds a group whenever
    the planner's estimates cross jit_above_cost; a server that JIT-compiles everything must
    not make the writer do so."""
    owner_db.execute(f'ALTER DATABASE "{owner_db.info.dbname}" SET jit_above_cost = 0')
    writer = PostgresWriter(db_url, load_policy().catalog())
    try:
        conn = writer._connection()
        assert conn.execute("SELECT current_setting('jit_above_cost')").fetchone() == ("0",)
        assert conn.execute("SELECT current_setting('jit')").fetchone() == ("off",)
    finally:
        writer.close()

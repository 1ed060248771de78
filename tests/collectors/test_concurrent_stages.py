"""Two writers storing different stages of one transaction at the same time: the transaction
row is computed from every stage row, never from the half one writer's snapshot showed it.

The interleaving is forced, not hoped for: a third session holds a lock that writer A meets
after it has written its transaction row, writer B then waits on that row, and the lock is
released only once both are seen waiting in pg_stat_activity.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest

from collectors.batch import Batch
from collectors.mapping import AttributeMap
from collectors.observations import Observer
from collectors.otlp import PROTOBUF
from collectors.traces import decode_spans, read_traces
from collectors.window import TimeWindow
from collectors.writer import PostgresWriter
from sla.policy import load_policy
from tests.support.otlp import stage_span, traces_request

_OBSERVER = Observer(AttributeMap())
_TRANSACTION = (
    "SELECT process, current_stage, stage_index, status, started_at, completed_at, "
    "last_event_at, customer_id, invoice_id, amount FROM transactions "
    "WHERE correlation_id = 'INV-7'"
)


def _stage(stage: str, at_s: int, seq: int, **business: object) -> Batch:
    """One stage span, from a service of its own (the writers then share no resource row)."""
    span = stage_span("INV-7", "invoice_posting", stage, "erp", at_s=at_s, seq=seq, **business)
    body = traces_request(span, service=f"erp-{seq}").SerializeToString()
    return decode_spans(read_traces(body, PROTOBUF, _OBSERVER), _OBSERVER, TimeWindow(0, 2**63))


_FIRST = _stage("invoice_posted", 10, 1, invoice_id="INV-7", amount=120.5)
_SECOND = _stage("invoice_recorded", 20, 2, customer_id="CUST-1")


def _transaction_after(url: str, batches: list[Batch]) -> tuple:
    writer = PostgresWriter(url, load_policy().catalog())
    try:
        for batch in batches:
            writer.write(batch)
    finally:
        writer.close()
    with psycopg.connect(url) as conn:
        return conn.execute(_TRANSACTION).fetchone()


def _wait_until_waiting(conn: psycopg.Connection, statement_start: str) -> None:
    """Return once a session of this database waits on a lock in a statement starting so."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND ltrim(query, E' \\n') LIKE %s",
            (statement_start + "%",),
        ).fetchone()
        if waiting == (1,):
            return
        time.sleep(0.01)
    sessions = conn.execute(
        "SELECT wait_event_type, wait_event, left(ltrim(query, E' \\n'), 40) FROM pg_stat_activity "
        "WHERE datname = current_database()"
    ).fetchall()
    raise AssertionError(f"no writer waited in {statement_start!r}: {sessions}")


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def _write(url: str, batch: Batch) -> Callable[[], None]:
    def write() -> None:
        writer = PostgresWriter(url, load_policy().catalog())
        try:
            writer.write(batch)
        finally:
            writer.close()

    return write


def test_a_stage_committed_while_another_waits_counts(new_db_url, pool) -> None:
    in_order = _transaction_after(new_db_url(), [_FIRST, _SECOND])
    assert in_order[1] == "invoice_recorded" and in_order[7:9] == ("CUST-1", "INV-7")

    url = new_db_url()
    with psycopg.connect(url, autocommit=True) as observer, psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE exceptions IN ACCESS EXCLUSIVE MODE")
        first: Future = pool.submit(_write(url, _FIRST))
        _wait_until_waiting(observer, "WITH pair_exception")  # its transaction row written
        second: Future = pool.submit(_write(url, _SECOND))
        _wait_until_waiting(observer, "INSERT INTO transactions")  # waits on that row
        holder.commit()
        first.result(timeout=30)
        second.result(timeout=30)
        assert observer.execute(_TRANSACTION).fetchone() == in_order

"""Writers storing different stages of one transaction at the same time: the transaction
row is computed from every stage row, never from the half one writer's snapshot showed it.

The interleaving is forced, not hoped for: a third session holds a lock that writer A meets
after it has written its transaction row, writer B then waits on that row, and the lock is
released only once both are seen waiting in pg_stat_activity.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collectors.batch import Batch
from collectors.mapping import AttributeMap
from collectors.observations import Observer
from collectors.otlp import PROTOBUF
from collectors.traces import decode_traces
from collectors.window import TimeWindow
from tests.support.otlp import stage_span, traces_request
from tests.support.storing import store_as_client

_OBSERVER = Observer(AttributeMap())
_TRANSACTION = (
    "SELECT process, current_stage, stage_index, status, started_at, completed_at, "
    "last_event_at, customer_id, invoice_id, amount FROM transactions "
    "WHERE correlation_id = 'INV-7'"
)


def _request(*spans: Span, service: str) -> Batch:
    body = traces_request(*spans, service=service).SerializeToString()
    return decode_traces(body, PROTOBUF, _OBSERVER, TimeWindow(0, 2**63))


def _stage(stage: str, at_s: int, seq: int, **business: object) -> Batch:
    """One stage span, from a service of its own (the writers then share no resource row)."""
    span = stage_span("INV-7", "invoice_posting", stage, "erp", at_s=at_s, seq=seq, **business)
    return _request(span, service=f"erp-{seq}")


_FIRST = _stage("invoice_posted", 10, 1, invoice_id="INV-7", amount=120.5)
_SECOND = _stage("invoice_recorded", 20, 2, customer_id="CUST-1")


def _transaction_after(url: str, batches: list[Batch]) -> tuple:
    store_as_client(url, batches)
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


def test_a_stage_committed_while_another_waits_counts(new_db_url) -> None:
    in_order = _transaction_after(new_db_url(), [_FIRST, _SECOND])
    assert in_order[1] == "invoice_recorded" and in_order[7:9] == ("CUST-1", "INV-7")

    url = new_db_url()
    with (
        psycopg.connect(url, autocommit=True) as observer,
        psycopg.connect(url) as holder,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        holder.execute("LOCK TABLE exceptions IN ACCESS EXCLUSIVE MODE")
        first = pool.submit(store_as_client, url, [_FIRST])
        _wait_until_waiting(observer, "WITH pair_exception")  # its transaction row written
        second = pool.submit(store_as_client, url, [_SECOND])
        _wait_until_waiting(observer, "INSERT INTO transactions")  # waits on that row
        holder.commit()
        first.result(timeout=30)
        second.result(timeout=30)
        assert observer.execute(_TRANSACTION).fetchone() == in_order


_STAGES = ("invoice_posted", "invoice_recorded", "collections_notified")
_DERIVED = {
    "transactions": "SELECT correlation_id, process, current_stage, stage_index, status, "
    "started_at, completed_at, last_event_at, customer_id, invoice_id FROM transactions",
    "stage_events": "SELECT correlation_id, stage, system, status, reached_at, last_ok_at, "
    "ok_times, business FROM stage_events",
    "exceptions": "SELECT correlation_id, stage, system, fingerprint, status, first_seen, "
    "last_seen, occurrences, resolution FROM exceptions",
}


def _shuffled_histories(seed: int) -> list[Batch]:
    """Twelve transactions of six stage events each (a third failing, business keys here
    and there), shuffled into requests of three spans."""
    rng = random.Random(seed)
    spans = []
    for number in range(12):
        for at_s in sorted(rng.sample(range(1, 100), 6)):
            seq = len(spans) + 1
            business = {"invoice_id": f"I{number}-{rng.randrange(2)}"} if rng.random() < 0.5 else {}
            spans.append(
                stage_span(
                    f"INV-{number}",
                    "invoice_posting",
                    rng.choice(_STAGES),
                    rng.choice(("erp", "crm")),
                    at_s=at_s,
                    seq=seq,
                    error=f"tax code {seq} invalid" if rng.random() < 0.3 else None,
                    **business,
                )
            )
    rng.shuffle(spans)
    return [_request(*spans[i : i + 3], service=f"svc-{i}") for i in range(0, len(spans), 3)]


def _derived(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {
            name: sorted(conn.execute(sql).fetchall(), key=repr) for name, sql in _DERIVED.items()
        }


@pytest.mark.parametrize("seed", range(3))
def test_three_writers_at_once_derive_what_one_does(seed: int, new_db_url) -> None:
    batches = _shuffled_histories(seed)
    alone = new_db_url()
    _transaction_after(alone, batches)
    url = new_db_url()
    start = threading.Barrier(3)
    with ThreadPoolExecutor(max_workers=3) as pool:
        shares = [batches[i::3] for i in range(3)]
        for done in [pool.submit(store_as_client, url, share, start) for share in shares]:
            done.result(timeout=120)
    assert _derived(url) == _derived(alone)

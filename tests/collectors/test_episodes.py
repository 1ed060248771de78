"""Failure episodes follow what happened, not the order deliveries arrive in: every order of
one transaction's failures, successes and dead letter ends in the same exceptions,
occurrences, dead-letter links and audit trail."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from collectors.batch import Batch
from collectors.logs import decode_logs
from collectors.mapping import AttributeMap
from collectors.observations import Observer
from collectors.otlp import PROTOBUF
from collectors.traces import decode_traces
from collectors.window import TimeWindow
from collectors.writer import PostgresWriter
from sla.policy import load_policy
from tests.support.otlp import (
    dead_letter_record,
    logs_request,
    stage_span,
    traces_request,
)
from tests.support.storing import store_as_client

_OBSERVER = Observer(AttributeMap())
_WINDOW = TimeWindow(0, 2**63 - 1)
_CLOSED = "period 2026-10 is closed"  # same fingerprint as the dead letter's message


def _span(at_s: int, seq: int, system: str = "erp", error: str | None = None) -> Batch:
    kind = "PostingRejected" if error == _CLOSED else "ValidationError"
    span = stage_span(
        "INV-40",
        "invoice_posting",
        "invoice_recorded",
        system,
        at_s=at_s,
        seq=seq,
        error=error,
        error_type=kind,
    )
    body = traces_request(span).SerializeToString()
    return decode_traces(body, PROTOBUF, _OBSERVER, _WINDOW)


def _dead_letter(at_s: int) -> Batch:
    record = dead_letter_record(
        "INV-40", at_s=at_s, target="http://127.0.0.1:9/erp", payload='{"invoice": "INV-40"}'
    )
    return decode_logs(logs_request(record), _OBSERVER, _WINDOW)


# One stage of one transaction, in the order it happened: A and B are two fingerprints.
_HISTORY = [
    _span(5, 100),  # a success before any failure ends nothing
    _span(10, 110, error=_CLOSED),  # A
    _span(12, 120, error="tax code 7 invalid"),  # B
    _span(20, 130),  # ends both episodes
    _dead_letter(25),  # A again: a dead-lettered message
    _span(27, 140, error=_CLOSED),  # A
    _span(30, 150, system="erp-backup"),  # a success on another system ends A's episode
    _span(40, 160, error=_CLOSED),  # A, open
    _span(41, 170, error="tax code 9 invalid"),  # B, open
]

_STATE = {
    "exceptions": "SELECT stage, system, kind, fingerprint, error_type, message, status, "
    "first_seen, last_seen, occurrences, resolution FROM exceptions",
    "occurrences": "SELECT o.record_key, o.occurrences, e.first_seen, e.status "
    "FROM exception_occurrences o JOIN exceptions e "
    "ON e.correlation_id = o.correlation_id AND e.id = o.exception_id",
    "dead_letters": "SELECT d.dedup_key, e.first_seen, e.kind FROM dead_letters d "
    "JOIN exceptions e ON e.correlation_id = d.correlation_id AND e.id = d.exception_id",
    # The audit trail records each resolution as it was known when it happened.
    "audit": "SELECT actor, action, before, after FROM exception_events",
    "stage_events": "SELECT stage, system, status, reached_at, last_ok_at, ok_times "
    "FROM stage_events",
}


# Exceptions whose count, span or earliest error differ from their failures' (none may).
_UNACCOUNTED = """
SELECT e.id FROM exceptions e
LEFT JOIN LATERAL (
    SELECT sum(o.occurrences) AS n, min(o.occurred_at) AS first, max(o.occurred_at) AS last,
           (array_agg(o.message ORDER BY o.occurred_at, o.message))[1] AS message
    FROM exception_occurrences o
    WHERE o.correlation_id = e.correlation_id AND o.exception_id = e.id
) o ON true
WHERE (e.occurrences, e.first_seen, e.last_seen, e.message)
      IS DISTINCT FROM (o.n, o.first, o.last, o.message)
"""


def _state_after(url: str, order: list[int], history: list[Batch] = _HISTORY) -> dict:
    """The derived rows after writing `history`'s batches in `order`, one per transaction."""
    writer = PostgresWriter(url, load_policy().catalog())
    try:
        for index in order:
            writer.write(history[index])
    finally:
        writer.close()
    return _state(url)


def _state(url: str) -> dict:
    """The derived rows, sorted, once every exception is checked against its failures."""
    with psycopg.connect(url) as conn:
        assert conn.execute(_UNACCOUNTED).fetchall() == []
        return {
            name: sorted(conn.execute(query).fetchall(), key=repr) for name, query in _STATE.items()
        }


@pytest.fixture
def in_order(new_db_url: Callable[[], str]) -> dict[str, list[tuple]]:
    return _state_after(new_db_url(), list(range(len(_HISTORY))))


def test_in_order_each_success_ends_the_episodes_before_it(in_order) -> None:
    exceptions = sorted(
        (row[6], row[2], row[9], row[5]) for row in in_order["exceptions"]
    )  # status, kind, occurrences, message
    assert exceptions == [
        ("auto_resolved", "dead_letter", 2, "period 2026-11 is closed"),
        ("auto_resolved", "error", 1, _CLOSED),
        ("auto_resolved", "error", 1, "tax code 7 invalid"),
        ("open", "error", 1, _CLOSED),
        ("open", "error", 1, "tax code 9 invalid"),
    ]
    assert len(in_order["audit"]) == 3
    assert [row[2] for row in in_order["dead_letters"]] == ["dead_letter"]
    ok_times = {row[1]: len(row[5]) for row in in_order["stage_events"]}
    assert ok_times == {"erp": 2, "erp-backup": 1}


_ORDERS = [
    list(reversed(range(len(_HISTORY)))),
    [3, 6, 0, 8, 7, 5, 4, 2, 1],  # successes first, failures newest first
    [1, 2, 4, 5, 7, 8, 0, 3, 6],  # failures first, then the successes
    [1, 2, 4, 5, 7, 8, 6, 3, 0],  # ... with the later success before the earlier
    *(random.Random(seed).sample(range(len(_HISTORY)), len(_HISTORY)) for seed in range(8)),
]


@pytest.mark.parametrize("order", _ORDERS, ids=lambda order: "".join(map(str, order)))
def test_any_order_ends_as_in_order(
    order: list[int], in_order, new_db_url: Callable[[], str]
) -> None:
    assert _state_after(new_db_url(), order) == in_order


def test_redeliveries_in_any_order_change_nothing(in_order, new_db_url) -> None:
    order = [7, 1, 3, 7, 0, 2, 3, 4, 6, 1, 5, 8, 4, 6]
    assert sorted(set(order)) == list(range(len(_HISTORY)))
    assert _state_after(new_db_url(), order) == in_order


def test_exceptions_closed_by_a_person_are_left_as_they_are(new_db_url) -> None:
    url = new_db_url()
    _state_after(url, [1, 2])  # A and B open
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE exceptions SET status = 'resolved', resolution = 'fixed by hand'")
    state = _state_after(url, [3, 5])  # the success, then A again

    rows = sorted((row[6], row[9], row[10]) for row in state["exceptions"])
    assert rows == [
        ("open", 1, None),
        ("resolved", 1, "fixed by hand"),
        ("resolved", 1, "fixed by hand"),
    ]


def _random_history(seed: int) -> list[Batch]:
    """Ten events of one stage at distinct whole seconds, in the order they happened:
    failures of two fingerprints, successes on two systems, dead letters."""
    rng = random.Random(seed)
    events = []
    for index, at_s in enumerate(sorted(rng.sample(range(1, 60), 10))):
        seq = 1000 * (seed + 1) + 10 * index
        kind = rng.choice(["closed", "closed", "tax", "ok", "ok-backup", "dead"])
        events.append(
            _dead_letter(at_s)
            if kind == "dead"
            else _span(at_s, seq)
            if kind == "ok"
            else _span(at_s, seq, system="erp-backup")
            if kind == "ok-backup"
            else _span(at_s, seq, error=_CLOSED if kind == "closed" else f"tax code {seq} invalid")
        )
    return events


@pytest.mark.parametrize("seed", range(4))
def test_random_histories_end_alike_in_any_order(seed: int, new_db_url) -> None:
    history = _random_history(seed)
    in_order = _state_after(new_db_url(), list(range(len(history))), history)
    rng = random.Random(seed)
    for _ in range(3):
        order = rng.sample(range(len(history)), len(history))
        assert _state_after(new_db_url(), order, history) == in_order, order


@pytest.mark.parametrize("seed", range(3))
def test_two_writers_at_once_end_as_in_order(seed: int, in_order, new_db_url) -> None:
    rng = random.Random(seed)
    order = rng.sample(range(len(_HISTORY)), len(_HISTORY))
    halves = (order[::2], order[1::2])
    url = new_db_url()
    start = threading.Barrier(2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [
            pool.submit(store_as_client, url, [_HISTORY[i] for i in half], start) for half in halves
        ]:
            done.result()

    assert _state(url) == in_order

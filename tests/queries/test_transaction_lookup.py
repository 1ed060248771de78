"""The trace explorer finds a transaction by its key whatever case it is typed in, by a
trace ID, and lists every transaction of a customer, newest first."""

from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy import Engine

from queries.transactions import find_transactions
from tests.support.otlp import stage_span, traces_request


def _send_orders(send) -> list[Span]:
    spans = [
        stage_span(
            f"ORD-{n}",
            "order_to_activation",
            "opportunity_closed_won",
            "crm",
            at_s=100 * n,
            seq=110_000 + 10 * n,
            customer_id="CUST-7",
            order_id=f"SO-{n}",
        )
        for n in range(3)
    ]
    send(traces_request(*spans))
    return spans


def test_a_key_is_found_in_upper_or_lower_case(send, engine: Engine) -> None:
    _send_orders(send)

    typed = [find_transactions(engine, key) for key in ("SO-1", "so-1", " so-1 ", "So-1")]

    assert [[t["correlation_id"] for t in found] for found in typed] == [["ORD-1"]] * 4


def test_a_trace_id_finds_its_transaction(send, engine: Engine) -> None:
    spans = _send_orders(send)

    found = find_transactions(engine, spans[2].trace_id.hex().upper())

    assert [t["correlation_id"] for t in found] == ["ORD-2"]


def test_a_customer_lists_all_its_transactions_newest_first(send, engine: Engine) -> None:
    _send_orders(send)

    found = find_transactions(engine, "cust-7")

    assert [t["correlation_id"] for t in found] == ["ORD-2", "ORD-1", "ORD-0"]
    assert all(t["process"] == "order_to_activation" and t["started_at"] for t in found)

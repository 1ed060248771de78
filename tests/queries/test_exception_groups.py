"""A fingerprint group's money is summed per currency, never across currencies."""

from __future__ import annotations

from sqlalchemy import Engine

from console._widgets import money_text
from queries.exceptions import ExceptionFilter, group_exceptions
from tests.support.otlp import stage_span, traces_request


def test_a_group_sums_its_amounts_per_currency(send, engine: Engine) -> None:
    money = [("EUR", 100.0), ("USD", 50.0), ("EUR", 25.5), (None, 10.0), ("GBP", None)]
    spans = []
    for n, (currency, amount) in enumerate(money):
        business = {"invoice_id": f"INV-G{n}"}
        if currency is not None:
            business["currency"] = currency
        if amount is not None:
            business["amount"] = amount
        spans.append(
            stage_span(
                f"INV-G{n}",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=60 + n,
                seq=90_000 + 10 * n,
                error="period closed",
                **business,
            )
        )
    send(traces_request(*spans))

    [group] = group_exceptions(engine, ExceptionFilter())

    assert group["exceptions"] == group["matching"] == 5
    assert group["amounts"] == {"EUR": 125.5, "USD": 50.0, "": 10.0}
    assert money_text(group["amounts"]) == "(no currency) 10.00 · EUR 125.50 · USD 50.00"


def test_groups_come_largest_first_named_by_their_first_failure_and_count_every_match(
    send, engine: Engine
) -> None:
    failures = [  # (transaction, seconds in, message): the first two are one failure's kind
        ("INV-F1", 70, "accounting period 9 is closed"),
        ("INV-F2", 50, "accounting period 7 is closed"),
        ("INV-F3", 60, "tax code 12 is not valid"),
    ]
    send(
        traces_request(
            *(
                stage_span(
                    correlation_id,
                    "invoice_posting",
                    "invoice_recorded",
                    "erp",
                    at_s=at_s,
                    seq=95_000 + 10 * n,
                    error=message,
                    invoice_id=correlation_id,
                )
                for n, (correlation_id, at_s, message) in enumerate(failures)
            )
        )
    )

    [largest] = group_exceptions(engine, ExceptionFilter(), limit=1)

    assert (largest["exceptions"], largest["matching"], largest["group_count"]) == (2, 3, 2)
    assert largest["sample_message"] == "accounting period 7 is closed"  # the first seen
    assert (largest["process"], largest["stage"], largest["system"], largest["kind"]) == (
        "invoice_posting",
        "invoice_recorded",
        "erp",
        "error",
    )
    assert group_exceptions(engine, ExceptionFilter(search="tax code"))[0]["matching"] == 1

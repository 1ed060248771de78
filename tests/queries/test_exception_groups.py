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

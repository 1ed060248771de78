"""A small quote-to-cash scenario as three OTLP requests, for idempotency and ordering tests."""

from __future__ import annotations

from tests.support.otlp import dead_letter_record, logs_request, stage_span, traces_request

PROTOBUF = {"Content-Type": "application/x-protobuf"}

FIRST = traces_request(
    stage_span(
        "INV-10",
        "invoice_posting",
        "invoice_posted",
        "billing",
        at_s=1,
        seq=1000,
        invoice_id="INV-10",
        amount=500.0,
        currency="EUR",
    ),
    stage_span(
        "INV-11",
        "invoice_posting",
        "invoice_posted",
        "billing",
        at_s=2,
        seq=1010,
        invoice_id="INV-11",
        amount=12500.0,
        currency="USD",
    ),
    stage_span(
        "INV-10",
        "invoice_posting",
        "invoice_recorded",
        "erp",
        at_s=10,
        seq=1020,
        error="posting 1001 failed: period 11 closed",
    ),
)
SECOND = traces_request(
    stage_span(
        "INV-10",
        "invoice_posting",
        "invoice_recorded",
        "erp",
        at_s=20,
        seq=1030,
        invoice_id="INV-10",
        amount=500.0,
    ),
    stage_span(
        "INV-11",
        "invoice_posting",
        "invoice_recorded",
        "erp",
        at_s=15,
        seq=1040,
        error="posting 2001 failed: period 11 closed",
    ),
    stage_span(
        "INV-11",
        "invoice_posting",
        "invoice_recorded",
        "erp",
        at_s=16,
        seq=1050,
        error="posting 2002 failed: period 11 closed",
    ),
    stage_span(
        "INV-10", "invoice_posting", "collections_notified", "collections", at_s=30, seq=1060
    ),
)
THIRD = logs_request(
    dead_letter_record(
        "INV-11", at_s=17, target="http://127.0.0.1:9/erp/invoices", payload='{"invoice": "INV-11"}'
    ),
)

IN_ORDER = [("/v1/traces", FIRST), ("/v1/traces", SECOND), ("/v1/logs", THIRD)]

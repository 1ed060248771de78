"""Realistic quote-to-cash telemetry, for benchmarks and tests: pre-encoded OTLP protobuf
batches.

Each business transaction contributes traces of four spans: the stage span, carrying the
q2c.* attributes and business keys, and three technical children (HTTP server, database,
HTTP client) that carry only the correlation ID. By default 5 % of stage spans fail.
"""

from __future__ import annotations

import random
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from sla.policy import load_policy

CATALOG = load_policy().catalog()

SPANS_PER_BATCH = 512
SPANS_PER_TRACE = 4
STAGE_SPREAD = 32  # batches between two stages of one transaction (see encoded_batches)
_SYSTEMS = {0: "crm", 1: "billing", 2: "erp", 3: "erp"}
_SERVICES = ("crm-connector", "billing-sync", "erp-adapter", "collections-bridge")


def kv(key: str, value: object) -> KeyValue:
    """A KeyValue of the matching AnyValue type."""
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _trace(
    rng: random.Random, start_ns: int, seq: int, stage: int | None, failure_share: float
) -> list[Span]:
    """Transaction `seq`'s trace for `stage` (None: a random one); its stage span fails with
    probability `failure_share`."""
    process = CATALOG[seq % len(CATALOG)]
    stage_index = rng.randrange(len(process.stages))
    if stage is not None:
        stage_index = stage % len(process.stages)
    correlation = f"{process.name[:3].upper()}-{seq:09d}"
    trace_id = rng.randbytes(16)
    root_id = rng.randbytes(8)
    failed = rng.random() < failure_share
    duration = rng.randrange(5_000_000, 900_000_000)
    attrs = [
        kv("q2c.correlation_id", correlation),
        kv("q2c.process", process.name),
        kv("q2c.stage", process.stages[stage_index]),
        kv("q2c.system", _SYSTEMS.get(stage_index, "erp")),
        kv("q2c.customer_id", f"CUST-{seq % 50_000:06d}"),
        kv("q2c.order_id", f"SO-{seq:09d}"),
        kv("q2c.invoice_id", f"INV-2026-{seq:09d}"),
        kv("q2c.amount", round(rng.uniform(50, 25_000), 2)),
        kv("q2c.currency", rng.choice(("EUR", "USD", "GBP"))),
        kv("q2c.legal_entity", rng.choice(("DE01", "US02", "UK01"))),
        kv("messaging.system", "kafka"),
        kv("messaging.destination.name", f"q2c.{process.name}"),
    ]
    status = Status(code=Status.STATUS_CODE_OK)
    if failed:
        attrs.append(kv("error.type", rng.choice(("ValidationError", "TimeoutError"))))
        status = Status(
            code=Status.STATUS_CODE_ERROR,
            message=f"ERP rejected posting {seq}: tax code T{seq % 97} invalid",
        )
    spans = [
        Span(
            trace_id=trace_id,
            span_id=root_id,
            name=f"{process.stages[stage_index]} handler",
            kind=Span.SPAN_KIND_CONSUMER,
            start_time_unix_nano=start_ns,
            end_time_unix_nano=start_ns + duration,
            attributes=attrs,
            status=status,
        )
    ]
    children = (
        (
            "POST /api/v2/records",
            Span.SPAN_KIND_SERVER,
            [
                kv("http.request.method", "POST"),
                kv("http.route", "/api/v2/records"),
                kv("http.response.status_code", 500 if failed else 201),
            ],
        ),
        (
            "SELECT ledger",
            Span.SPAN_KIND_CLIENT,
            [kv("db.system", "postgresql"), kv("db.operation.name", "SELECT")],
        ),
        (
            "PUT erp /postings",
            Span.SPAN_KIND_CLIENT,
            [
                kv("http.request.method", "PUT"),
                kv("server.address", "erp.internal"),
                kv("http.response.status_code", 422 if failed else 200),
            ],
        ),
    )
    for offset, (name, kind, child_attrs) in enumerate(children, start=1):
        child_start = start_ns + offset * duration // 8
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=rng.randbytes(8),
                parent_span_id=root_id,
                name=name,
                kind=kind,
                start_time_unix_nano=child_start,
                end_time_unix_nano=child_start + duration // 8,
                attributes=[kv("q2c.correlation_id", correlation), *child_attrs],
            )
        )
    return spans


def _transaction(seq: int, stages: int) -> tuple[int, int | None]:
    """(transaction, stage) of the `seq`th trace: with one stage each trace is a transaction
    of its own at a random stage; with more, a transaction's stages follow one another
    STAGE_SPREAD batches apart (as stages minutes apart would), each one trace."""
    if stages == 1:
        return seq, None
    traces = SPANS_PER_BATCH // SPANS_PER_TRACE
    batch, slot = divmod(seq, traces)
    block, within = divmod(batch, stages * STAGE_SPREAD)
    stage, column = divmod(within, STAGE_SPREAD)
    return (block * STAGE_SPREAD + column) * traces + slot, stage


def encoded_batches(
    count: int, seed: int = 7, first_seq: int = 0, stages: int = 1, failure_share: float = 0.05
) -> list[bytes]:
    """`count` serialized ExportTraceServiceRequests of SPANS_PER_BATCH spans each, whose
    transactions each report `stages` stages, a `failure_share` of stage spans failing."""
    rng = random.Random(seed)
    now = time.time_ns() - 3_600 * 1_000_000_000
    batches = []
    seq = first_seq
    for index in range(count):
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(
            [
                kv("service.name", _SERVICES[index % len(_SERVICES)]),
                kv("deployment.environment.name", "bench"),
                kv("host.name", f"node-{index % 3}"),
            ]
        )
        scope = resource_spans.scope_spans.add()
        scope.scope.name = "q2c.bench"
        for _ in range(SPANS_PER_BATCH // SPANS_PER_TRACE):
            start_ns = now + seq * 1_000_000
            scope.spans.extend(_trace(rng, start_ns, *_transaction(seq, stages), failure_share))
            seq += 1
        batches.append(request.SerializeToString())
    return batches

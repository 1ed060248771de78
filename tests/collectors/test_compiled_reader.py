"""The compiled reader (collectors/_wire.c) changes nothing but speed.

A body it reads gives exactly the batch the protobuf runtime's path gives: the same COPY
rows of spans, observations, dead letters and resources, the same rejections. A body it
does not read in full it leaves to the runtime (None), and it never reads one the runtime
refuses. `make fuzz` holds it to the same on mutated bodies (tests/fuzz/reader.py).
"""

from __future__ import annotations

import random
from types import ModuleType

import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from collectors._values import to_json
from collectors.otlp import PROTOBUF
from collectors.traces import decode_traces, resource_spans
from collectors.window import TimeWindow
from collectors.writer import PostgresWriter
from demo.workload import encoded_batches
from sla.policy import load_policy
from tests.support.differential import WINDOWS, comparable, compiled_batch, runtime_batch
from tests.support.random_otlp import (
    OBSERVER,
    damaged,
    random_request,
    read_compiled,
    stage_request,
)

pytestmark = pytest.mark.usefixtures("compiled_wire")


def _bodies() -> list[bytes]:
    rng = random.Random(20261127)
    return (
        [random_request(rng).SerializeToString() for _ in range(2000)]
        + [stage_request(rng).SerializeToString() for _ in range(2000)]
        + encoded_batches(4)
    )


@pytest.mark.parametrize("window", WINDOWS.values(), ids=WINDOWS.keys())
def test_batches_are_those_of_the_runtime(window: TimeWindow) -> None:
    seen = {"encoded spans": 0, "spans built in Python": 0, "failures": 0, "dead letters": 0}
    for body in _bodies():
        batch = compiled_batch(body, window)
        assert batch is not None  # the reader reads every body of this shape
        assert comparable(batch) == comparable(runtime_batch(body, window)), body.hex()
        seen["encoded spans"] += len(batch.encoded_spans)
        seen["spans built in Python"] += len(batch.spans)
        seen["failures"] += sum(not row.ok for row in batch.observations)
        seen["dead letters"] += len(batch.dead_letters)
    assert min(seen.values()) > 10, seen  # every path was taken


def test_damaged_bodies_are_never_read_differently() -> None:
    rng = random.Random(13)
    window = WINDOWS["all times"]
    bodies = _bodies()[1900:2300] + encoded_batches(1)
    read = left_to_runtime = 0
    for body in bodies:
        for _ in range(15):
            broken = damaged(rng, body)
            compiled = compiled_batch(broken, window)
            if compiled is None:
                left_to_runtime += 1
                continue  # the runtime decides, as for any body
            assert comparable(compiled) == comparable(runtime_batch(broken, window))
            read += 1
    assert read > 200 and left_to_runtime > 200, (read, left_to_runtime)


def test_an_empty_body_is_an_empty_request() -> None:
    assert read_compiled(b"") == []


def _body_of(span: bytes) -> bytes:
    """An export request holding one span given as raw protobuf bytes."""

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    return field(1, field(2, field(2, span)))


def test_a_tag_longer_than_five_bytes_is_left_to_the_runtime() -> None:
    # Found by `make fuzz`: a six-byte tag whose value fits in 32 bits. The runtime calls
    # the wire format corrupt; the reader must not read such a body either.
    for padded_tag in (b"\xd2\xe9\xef\xe5\x8a\x00", b"\x8a\x80\x80\x80\x80\x00"):
        body = b"\x0a\x00" + padded_tag + b"\x00"
        assert runtime_batch(body, WINDOWS["all times"]) is None
        assert read_compiled(body) is None
    five_bytes = b"\x0a\x00\x8a\x80\x80\x80\x00\x00"  # as long as the runtime allows
    assert runtime_batch(five_bytes, WINDOWS["all times"]) is not None
    assert read_compiled(five_bytes) == read_compiled(b"\x0a\x00\x0a\x00")


def test_bytes_values_are_left_to_the_runtime() -> None:
    # The runtime turns bytes attribute values into base64 text; the reader stands aside.
    span = Span(attributes=[KeyValue(key="k", value=AnyValue(bytes_value=b"x"))])
    assert read_compiled(_body_of(span.SerializeToString())) is None


def test_a_singular_message_sent_twice_is_left_to_the_runtime() -> None:
    # Protobuf merges two occurrences of a singular message field (here Span.status).
    raw = (
        Span(trace_id=b"t" * 16, span_id=b"s" * 8).SerializeToString()
        + Span(status=Status(code=2)).SerializeToString()
        + Span(status=Status(message="late")).SerializeToString()
    )
    body = _body_of(raw)
    assert read_compiled(body) is None
    [(_, [span])] = resource_spans(ExportTraceServiceRequest.FromString(body))
    assert (span.status_code, span.status_message) == (2, "late")


def test_every_copy_of_a_repeated_string_is_checked() -> None:
    # A key sent twice: the runtime checks both for UTF-8 before keeping the last one.
    first, last = b"\x0a\x02\xf0\x7f", b"\x0a\x01k"  # KeyValue.key, invalid then valid
    for key_value in (first + last, last + first):
        span = Span(trace_id=b"t" * 16, span_id=b"s" * 8).SerializeToString()
        raw = span + bytes([9 << 3 | 2, len(key_value)]) + key_value  # Span.attributes
        body = _body_of(raw)
        assert runtime_batch(body, WINDOWS["all times"]) is None
        assert read_compiled(body) is None


def test_a_key_holding_nul_is_left_to_the_runtime() -> None:
    # Stored without its NUL, "q2c.\x00amount" is q2c.amount: the runtime's path reads it so.
    span = Span(
        trace_id=b"t" * 16,
        span_id=b"s" * 8,
        attributes=[
            KeyValue(key=key, value=AnyValue(string_value=text))
            for key, text in [
                ("q2c.process", "order_to_cash"),
                ("q2c.stage", "invoice"),
                ("q2c.correlation_id", "c-1"),
                ("q2c.amount", "x"),
                ("q2c.\x00amount", "2.5"),
            ]
        ],
    )
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span)
    body = request.SerializeToString()
    assert read_compiled(body) is None
    batch = runtime_batch(body, WINDOWS["all times"])
    assert batch is not None
    [observation] = batch.observations
    assert b'"amount":2.5' in observation.business


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("Span.flags as a varint", bytes([16 << 3 | 0, 0x01, 1])),  # fixed32 in the schema
        ("Span.dropped_events_count as bytes", bytes([12 << 3 | 2, 0])),
        ("Link.flags as a varint", bytes([13 << 3 | 2, 2, 6 << 3 | 0, 1])),
        ("KeyValue.key_strindex", bytes([9 << 3 | 2, 2, 3 << 3 | 0, 1])),
        ("AnyValue.string_value_strindex", bytes([9 << 3 | 2, 4, 2 << 3 | 2, 2, 8 << 3, 1])),
    ],
)
def test_known_fields_it_cannot_take_as_sent_are_left_to_the_runtime(
    field: str, raw: bytes
) -> None:
    span = Span(trace_id=b"t" * 16, span_id=b"s" * 8).SerializeToString()
    assert read_compiled(_body_of(span + raw)) is None, field


def test_the_layout_must_use_the_readers_letters(compiled_wire: ModuleType) -> None:
    with pytest.raises(ValueError, match="layout letters"):
        compiled_wire.read_traces(b"", (), (), "TZ")


def _storable(request: ExportTraceServiceRequest) -> bytes:
    """`request` with spans the collector accepts (valid IDs, kinds and times, one day)."""
    for resource in request.resource_spans:
        for scope_spans in resource.scope_spans:
            for number, span in enumerate(scope_spans.spans):
                span.trace_id = span.trace_id[:15].ljust(15, b"t") + bytes([number + 1])
                span.kind = number % 6
                span.start_time_unix_nano = 1_790_000_000_000_000_000 + number
                span.end_time_unix_nano = span.start_time_unix_nano + 1
    return request.SerializeToString()


def test_postgresql_stores_the_attributes_the_runtime_reads(owner_db_url: str) -> None:
    db_url = owner_db_url  # its spans fall on any day; only the owner makes such partitions
    rng = random.Random(3)
    # Random spans, and the demo's, most of which come encoded from the reader.
    bodies = [_storable(random_request(rng)) for _ in range(40)] + encoded_batches(2)
    window = WINDOWS["all times"]
    writer = PostgresWriter(db_url, load_policy().catalog())
    expected: dict[bytes, str] = {}  # span key → the runtime's JSON, as orjson writes it
    encoded = 0
    for body in bodies:
        batch = decode_traces(body, PROTOBUF, OBSERVER, window)
        assert not batch.rejected, batch.reasons
        encoded += len(batch.encoded_spans)
        writer.write(batch)
        for _, spans in resource_spans(ExportTraceServiceRequest.FromString(body)):
            for span in spans:
                expected[span.trace_id + span.span_id] = to_json(span.selected).decode()
    writer.close()
    with psycopg.connect(db_url) as conn:
        # PostgreSQL compares the documents (1e308 and 1e+308 are the same number).
        matching, stored = conn.execute(
            "SELECT count(*) FILTER (WHERE s.attributes = e.document::jsonb), count(*) "
            "FROM spans s JOIN unnest(%s::bytea[], %s::text[]) AS e(key, document) "
            "ON s.trace_id || s.span_id = e.key",
            (list(expected), list(expected.values())),
        ).fetchone()
    assert matching == stored == len(expected) > 50
    assert encoded > 10

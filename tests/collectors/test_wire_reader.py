"""The compiled protobuf reader gives exactly what the protobuf runtime gives, or stands
aside (None) so that the runtime decides; it never accepts a body the runtime refuses.

It makes Python values only of the attributes the observer reads and writes all of them as
jsonb; the runtime's path makes every value and has orjson write the jsonb. Compared here:
the selected attributes as values, and the jsonb as the JSON document it holds."""

from __future__ import annotations

import math
import random

import orjson
import psycopg
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from bench.workload import encoded_batches
from collectors._compiled import wire as _wire
from collectors._values import to_json
from collectors.mapping import AttributeMap
from collectors.observations import Observer
from collectors.otlp import PROTOBUF
from collectors.traces import decode_traces, resource_spans
from collectors.window import TimeWindow
from collectors.writer import PostgresWriter
from sla.policy import load_policy

pytestmark = pytest.mark.skipif(_wire is None, reason="collectors._wire was not compiled")

_OBSERVER = Observer(AttributeMap())
_WORDS = (
    "order",
    "Überweisung",
    "請求書",
    "",
    "a\x00b",
    "🧾",
    "x" * 300,
    'q"uote\\ \n\t\r\b\f\x01\x1f\x7f',
)


def _any_value(rng: random.Random, depth: int = 0) -> AnyValue:
    choice = rng.randrange(7 if depth < 3 else 5)
    if choice == 0:
        return AnyValue(string_value=rng.choice(_WORDS))
    if choice == 1:
        return AnyValue(bool_value=rng.random() < 0.5)
    if choice == 2:
        return AnyValue(int_value=rng.choice((0, -1, 2**63 - 1, -(2**63), rng.randrange(10**9))))
    if choice == 3:
        return AnyValue(double_value=rng.choice((0.0, -2.5, 1e308, math.inf, 3.14159)))
    if choice == 4:
        return AnyValue()  # no value at all
    if choice == 5:
        return AnyValue(array_value=ArrayValue(values=[_any_value(rng, depth + 1)] * 3))
    return AnyValue(kvlist_value=KeyValueList(values=_attributes(rng, depth + 1)))


def _attributes(rng: random.Random, depth: int = 0) -> list[KeyValue]:
    keys = ("q2c.correlation_id", "q2c.stage", "http.route", "n", "dup", "dup", "")
    return [KeyValue(key=rng.choice(keys), value=_any_value(rng, depth)) for _ in range(6)]


def _span(rng: random.Random) -> Span:
    span = Span(
        trace_id=rng.randbytes(rng.choice((16, 16, 15))),
        span_id=rng.randbytes(8),
        parent_span_id=rng.choice((b"", rng.randbytes(8))),
        trace_state="k=v",
        name=rng.choice(_WORDS),
        kind=rng.choice((0, 1, 5, -3, 2**31 - 1)),
        start_time_unix_nano=rng.randrange(2**64),
        end_time_unix_nano=rng.randrange(2**64),
        attributes=_attributes(rng),
        dropped_attributes_count=rng.randrange(3),
        flags=rng.randrange(2**32),
    )
    if rng.random() < 0.5:
        span.status.CopyFrom(Status(code=rng.randrange(3), message=rng.choice(_WORDS)))
    for _ in range(rng.randrange(3)):
        event = span.events.add(time_unix_nano=rng.randrange(2**64), name=rng.choice(_WORDS))
        event.attributes.extend(_attributes(rng))
    if rng.random() < 0.3:
        span.links.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8))
    return span


def _request(rng: random.Random) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=_attributes(rng)),
                scope_spans=[
                    ScopeSpans(
                        scope=InstrumentationScope(name="q2c", version="1"),
                        spans=[_span(rng) for _ in range(rng.randrange(4))],
                    )
                    for _ in range(rng.randrange(3))
                ],
                schema_url="https://opentelemetry.io/schemas/1.26.0",
            )
            for _ in range(rng.randrange(1, 3))
        ]
    )


def _context(res_attrs: dict) -> tuple:
    return _OBSERVER.readable(res_attrs), "", None


def _read(body: bytes) -> list | None:
    """What the reader gives with an empty window, which has it write no span straight:
    every span as values."""
    direct = (_context, _OBSERVER.correlation_keys, _OBSERVER.compiled, 1, 0, set())
    read = _wire.read_traces(body, _OBSERVER.read_keys, _OBSERVER.read_prefixes, direct)
    if read is None:
        return None
    resources, rows, count, observations = read
    assert (rows, count, observations) == (b"", 0, b"")
    return [(res_attrs, spans) for res_attrs, _, spans in resources]


def _runtime(body: bytes) -> list | None:
    try:
        return resource_spans(ExportTraceServiceRequest.FromString(body))
    except DecodeError:
        return None


def _selected(key: str) -> bool:
    return key in _OBSERVER.read_keys or key.startswith(_OBSERVER.read_prefixes)


def _comparable(resources: list | None) -> str:
    """Selected attributes as values, all of them as the JSON document; repr for NaN."""
    if resources is None:
        return "None"
    shown = []
    for res_attrs, spans in resources:
        rows = []
        for span in spans:
            chosen = {key: value for key, value in span[7].items() if _selected(key)}
            rows.append((*span[:7], chosen, orjson.loads(span[8][1:]), *span[9:]))
        shown.append((res_attrs, rows))
    return repr(shown)


def test_reads_what_the_protobuf_runtime_reads() -> None:
    rng = random.Random(7)
    for _ in range(300):
        body = _request(rng).SerializeToString()
        read = _read(body)
        assert _comparable(read) == _comparable(_runtime(body))
        assert read is not None
        assert all(_selected(key) for _, spans in read for span in spans for key in span[7])


def test_an_empty_body_is_an_empty_request() -> None:
    assert _read(b"") == []


def _body_of(span: bytes) -> bytes:
    """An export request holding one span given as raw protobuf bytes."""

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    return field(1, field(2, field(2, span)))


def test_bytes_values_are_left_to_the_runtime() -> None:
    # The runtime turns bytes attribute values into base64 text; the reader stands aside.
    span = Span(attributes=[KeyValue(key="k", value=AnyValue(bytes_value=b"x"))])
    assert _read(_body_of(span.SerializeToString())) is None


def test_a_singular_message_sent_twice_is_left_to_the_runtime() -> None:
    # Protobuf merges two occurrences of a singular message field (here Span.status).
    raw = (
        Span(trace_id=b"t" * 16, span_id=b"s" * 8).SerializeToString()
        + Span(status=Status(code=2)).SerializeToString()
        + Span(status=Status(message="late")).SerializeToString()
    )
    body = _body_of(raw)
    assert _read(body) is None
    [(_, [span])] = _runtime(body)
    assert span[10:] == (2, "late")


def test_every_copy_of_a_repeated_string_is_checked() -> None:
    # A key sent twice: the runtime checks both for UTF-8 before keeping the last one.
    first, last = b"\x0a\x02\xf0\x7f", b"\x0a\x01k"  # KeyValue.key, invalid then valid
    for key_value in (first + last, last + first):
        span = Span(trace_id=b"t" * 16, span_id=b"s" * 8).SerializeToString()
        raw = span + bytes([9 << 3 | 2, len(key_value)]) + key_value  # Span.attributes
        body = _body_of(raw)
        assert _runtime(body) is None
        assert _read(body) is None


def _damaged(rng: random.Random, body: bytes) -> bytes:
    """`body` with one to three bytes changed, a tail cut off or random bytes inserted."""
    damaged = bytearray(body)
    for _ in range(rng.randrange(1, 4)):
        action = rng.randrange(3)
        if action == 0 and damaged:
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        elif action == 1:
            del damaged[rng.randrange(len(damaged) + 1) :]
        else:
            at = rng.randrange(len(damaged) + 1)
            damaged[at:at] = rng.randbytes(rng.randrange(1, 6))
    return bytes(damaged)


def test_damaged_bodies_are_never_read_differently() -> None:
    rng = random.Random(11)
    bodies = [_request(rng).SerializeToString() for _ in range(20)]
    checked = 0
    for body in bodies:
        for _ in range(150):
            damaged = _damaged(rng, body)
            fast = _read(damaged)
            if fast is not None:
                assert _comparable(fast) == _comparable(_runtime(damaged))
                checked += 1
    assert checked > 100  # many damaged bodies are still valid protobuf, and read alike


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


def test_postgresql_stores_the_attributes_the_runtime_reads(db_url: str) -> None:
    rng = random.Random(3)
    # Random spans, and the benchmark's, most of which are written straight as rows.
    bodies = [_storable(_request(rng)) for _ in range(40)] + encoded_batches(2)
    window = TimeWindow(0, 2**64)
    writer = PostgresWriter(db_url, load_policy().catalog())
    expected: dict[bytes, str] = {}  # span key → the runtime's JSON, as orjson writes it
    written_straight = 0
    for body in bodies:
        batch = decode_traces(body, PROTOBUF, _OBSERVER, window)
        assert not batch.rejected, batch.reasons
        written_straight += batch.encoded_span_count
        writer.write(batch)
        for _, spans in _runtime(body):
            for span in spans:
                expected[span[0] + span[1]] = to_json(span[7]).decode()
    writer.close()
    with psycopg.connect(db_url) as conn:
        # PostgreSQL compares the documents (1e308 and its 309 digits are the same number).
        matching, stored = conn.execute(
            "SELECT count(*) FILTER (WHERE s.attributes = e.document::jsonb), count(*) "
            "FROM spans s JOIN unnest(%s::bytea[], %s::text[]) AS e(key, document) "
            "ON s.trace_id || s.span_id = e.key",
            (list(expected), list(expected.values())),
        ).fetchone()
    assert matching == stored == len(expected) > 50
    assert written_straight > 10

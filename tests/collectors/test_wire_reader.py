"""The compiled protobuf reader gives exactly what the protobuf runtime gives, or stands
aside (None) so that the runtime decides; it never accepts a body the runtime refuses."""

from __future__ import annotations

import math
import random

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

from collectors._compiled import wire as _wire
from collectors.traces import resource_spans

pytestmark = pytest.mark.skipif(_wire is None, reason="collectors._wire was not compiled")

_WORDS = ("order", "Überweisung", "請求書", "", "a\x00b", "🧾", "x" * 300)


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


def _runtime(body: bytes) -> list | None:
    try:
        return resource_spans(ExportTraceServiceRequest.FromString(body))
    except DecodeError:
        return None


def test_reads_what_the_protobuf_runtime_reads() -> None:
    rng = random.Random(7)
    for _ in range(300):
        body = _request(rng).SerializeToString()
        assert _wire.read_traces(body) == _runtime(body)


def test_an_empty_body_is_an_empty_request() -> None:
    assert _wire.read_traces(b"") == []


def _body_of(span: bytes) -> bytes:
    """An export request holding one span given as raw protobuf bytes."""

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    return field(1, field(2, field(2, span)))


def test_bytes_values_are_left_to_the_runtime() -> None:
    # The runtime turns bytes attribute values into base64 text; the reader stands aside.
    span = Span(attributes=[KeyValue(key="k", value=AnyValue(bytes_value=b"x"))])
    assert _wire.read_traces(_body_of(span.SerializeToString())) is None


def test_a_singular_message_sent_twice_is_left_to_the_runtime() -> None:
    # Protobuf merges two occurrences of a singular message field (here Span.status).
    raw = (
        Span(trace_id=b"t" * 16, span_id=b"s" * 8).SerializeToString()
        + Span(status=Status(code=2)).SerializeToString()
        + Span(status=Status(message="late")).SerializeToString()
    )
    body = _body_of(raw)
    assert _wire.read_traces(body) is None
    [(_, [span])] = _runtime(body)
    assert span[9:] == (2, "late")


def test_damaged_bodies_are_never_read_differently() -> None:
    rng = random.Random(11)
    bodies = [_request(rng).SerializeToString() for _ in range(20)]
    checked = 0
    for body in bodies:
        for _ in range(150):
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
            fast = _wire.read_traces(bytes(damaged))
            if fast is not None:  # repr: NaN attribute values compare unequal to themselves
                assert repr(fast) == repr(_runtime(bytes(damaged)))
                checked += 1
    assert checked > 100  # many damaged bodies are still valid protobuf, and read alike

"""Random, stage-shaped and damaged OTLP trace requests, and what the compiled reader
reads of them, for the tests and the fuzzer that hold it against the protobuf runtime."""

from __future__ import annotations

import math
import random

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

from collectors import _compiled
from collectors.mapping import AttributeMap
from collectors.observations import Observer
from collectors.traces import LAYOUT

OBSERVER = Observer(AttributeMap())
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


def random_request(rng: random.Random) -> ExportTraceServiceRequest:
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


# Values of the attributes an observation reads: texts, numbers written as text (which
# float() may or may not take), other types, and no value at all.
_VALUES = (
    "invoice",
    "",
    "a\x00b",
    "Überweisung",
    "12.5",
    " 7 ",
    "1_000",
    "nan",
    "-inf",
    "1e16",
    "0x10",
    True,
    False,
    0,
    3,
    -(2**63),
    2.5,
    1e300,
    math.nan,
    None,
    [1, "x"],
    {"k": "v"},
    1e15,
    "1e15",
    999999999999999.9,
    "ok",
    "error",
    "true",
    "yes",
)


def _value(value: object) -> AnyValue:
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[_value(item) for item in value]))
    if isinstance(value, dict):
        pairs = [KeyValue(key=k, value=_value(v)) for k, v in value.items()]
        return AnyValue(kvlist_value=KeyValueList(values=pairs))
    return AnyValue(string_value=str(value))


def _observed_attributes(rng: random.Random, share: float) -> list[KeyValue]:
    """Attributes an observation reads, each present with probability `share`; the ones
    every stage span carries mostly hold plain text."""
    pairs = []
    for key in OBSERVER.read_keys:
        if rng.random() < share:
            common = key in ("q2c.process", "q2c.stage", "q2c.correlation_id", "q2c.amount")
            value = rng.choice(_VALUES) if rng.random() < 0.3 or not common else "x-1"
            pairs.append(KeyValue(key=key, value=_value(value)))
    return pairs


def stage_request(rng: random.Random) -> ExportTraceServiceRequest:
    """Spans naming a stage, successful or failed, some dead-lettered, with every kind of
    value in the attributes an observation reads, on the span and on its resource."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend(_observed_attributes(rng, 0.1))
    resource.resource.attributes.add(key="service.name", value=_value("billing-sync"))
    scope = resource.scope_spans.add()
    for _ in range(rng.randrange(1, 5)):
        start = rng.choice((1_700_000_000_000_000_000, 2**62 + 10**15)) + rng.randrange(10**12)
        span = scope.spans.add(
            trace_id=rng.randbytes(16),
            span_id=rng.randbytes(8),
            name=rng.choice(("stage", "stage\x00name")),
            start_time_unix_nano=start,
            end_time_unix_nano=start + rng.randrange(10**9),
        )
        span.attributes.extend(_observed_attributes(rng, rng.choice((0.2, 0.5, 0.9))))
        if rng.random() < 0.4:  # failures too, with messages longer than those kept
            span.status.code = rng.randrange(3)
            span.status.message = rng.choice(("", "rejected 42", "Überweisung 7 " * 400))
        if rng.random() < 0.2:
            event = span.events.add(name=rng.choice(("exception", "dead letter")))
            event.attributes.extend(_observed_attributes(rng, 0.5))
    return request


def read_compiled(body: bytes) -> list | None:
    """What the compiled reader reads of `body`: None when it leaves it to the runtime."""
    assert _compiled.built is not None
    return _compiled.built.read_traces(body, OBSERVER.read_keys, OBSERVER.read_prefixes, LAYOUT)


def damaged(rng: random.Random, body: bytes) -> bytes:
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

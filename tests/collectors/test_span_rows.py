"""Spans that need nothing but a row get it in C, written straight from the body by
collectors._wire.read_traces or built by collectors._wire.span_rows, and so do stage spans
with their observation; the rows sent to PostgreSQL and the rest of the batch are exactly
those the Python path alone builds, whatever the spans hold."""

from __future__ import annotations

import math
import random

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from bench.workload import encoded_batches
from collectors._compiled import wire
from collectors._pgtypes import CopyRows
from collectors._sql import STAGING_TYPES
from collectors.batch import Batch
from collectors.mapping import AttributeMap
from collectors.observations import Observer
from collectors.otlp import PROTOBUF
from collectors.traces import _add_span, decode_traces, resource_key
from collectors.window import TimeWindow
from tests.collectors.test_wire_reader import _damaged, _read, _request

pytestmark = pytest.mark.skipif(wire is None, reason="collectors._wire was not compiled")

_OBSERVER = Observer(AttributeMap())
_WINDOWS = {
    "all times": TimeWindow(0, 2**64),
    "some times": TimeWindow(2**62, 2**63),
    "beyond 64 bits": TimeWindow(-(2**70), 2**70),
}


def _python_only(resources: list, window: TimeWindow) -> Batch:
    batch = Batch()
    for res_attrs, spans in resources:
        res_key, service = resource_key(res_attrs, batch)
        for span in spans:
            _add_span(batch, span, _OBSERVER, window, res_key, service, res_attrs)
    return batch


def _copy_rows(rows: list[tuple], table: str, encoded: list[bytes]) -> list[tuple]:
    """Rows as the writer sends them: each a tuple of its binary COPY fields (none when a
    value does not fit its column, and the writer refuses the batch)."""
    try:
        data = CopyRows(rows, STAGING_TYPES[table], encoded).data
    except OverflowError:
        return [("unstorable",)]
    rows, at = [], 19  # past the COPY header
    while data is not None and (columns := int.from_bytes(data[at : at + 2], signed=True)) != -1:
        at += 2
        row = []
        for _ in range(columns):
            size = int.from_bytes(data[at : at + 4], signed=True)
            row.append(None if size == -1 else data[at + 4 : at + 4 + size])
            at += 4 + max(size, 0)
        rows.append(tuple(row))
    return rows


def _observations(batch: Batch) -> list[tuple]:
    """The observation rows as sent, their business documents (jsonb, whose numbers
    PostgreSQL reads whatever their spelling) as the values they hold."""
    rows = _copy_rows(batch.observations, "_in_obs", batch.encoded_observations)
    return [(*row[:7], orjson.loads(row[7][1:]), *row[8:]) if len(row) > 7 else row
            for row in rows]  # fmt: skip


def _comparable(batch: Batch) -> tuple:
    return (
        sorted(_copy_rows(batch.spans, "_in_spans", batch.encoded_spans), key=repr),
        sorted(_observations(batch), key=repr),
        sorted(map(repr, batch.dead_letters)),
        batch.resources,
        batch.days,
        batch.rejected,
        batch.reasons,
    )


def _rows_in_c(resources: list, window: TimeWindow) -> tuple[int, int, int]:
    """(rows, observations, failures among them) span_rows makes in C of `resources`."""
    rows: list[tuple] = []
    observations: list[tuple] = []
    for res_attrs, spans in resources:
        wire.span_rows(spans, _OBSERVER.readable(res_attrs), "s", None,
                       _OBSERVER.correlation_keys, _OBSERVER.compiled,
                       max(window.earliest_ns, 0), min(window.latest_ns, 2**64 - 1), rows,
                       observations, set())  # fmt: skip
    return len(rows), len(observations), sum(1 for o in observations if not o[6])


# Values of the attributes an observation reads: texts, numbers written as text (which
# float() may or may not take), other types, and no value at all.
_VALUES = (
    "invoice", "", "a\x00b", "Überweisung", "12.5", " 7 ", "1_000", "nan", "-inf", "1e16",
    "0x10", True, False, 0, 3, -(2**63), 2.5, 1e300, math.nan, None, [1, "x"], {"k": "v"},
    1e15, "1e15", 999999999999999.9, "ok", "error", "true", "yes",
)  # fmt: skip
# Text only: the values of spans the compiled reader observes by itself.
_TEXTS = ("x-1", "", "Überweisung", "12.5", " 7 ", "1e15", "ok", "error", "true", "yes")


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
    """Attributes a stage observation reads, each present with probability `share` (those
    that send a record to the Python path, a quarter as often); half the time all text."""
    pairs = []
    texts = rng.random() < 0.5
    for key in _OBSERVER.read_keys:
        if rng.random() < (share / 4 if key in _OBSERVER.compiled[3] else share):
            common = key in ("q2c.process", "q2c.stage", "q2c.correlation_id", "q2c.amount")
            value = rng.choice(_VALUES) if rng.random() < 0.3 or not common else "x-1"
            pairs.append(KeyValue(key=key, value=_value(rng.choice(_TEXTS) if texts else value)))
    return pairs


def _stage_request(rng: random.Random) -> ExportTraceServiceRequest:
    """Spans naming a stage, successful or failed, with every kind of value in the
    attributes an observation reads, on the span and on its resource."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend(_observed_attributes(rng, 0.1))
    resource.resource.attributes.add(key="service.name", value=_value("billing-sync"))
    scope = resource.scope_spans.add()
    for _ in range(rng.randrange(1, 5)):
        start = rng.choice((1_700_000_000_000_000_000, 2**62 + 10**15)) + rng.randrange(10**12)
        span = scope.spans.add(
            trace_id=rng.randbytes(16), span_id=rng.randbytes(8), name="stage",
            start_time_unix_nano=start, end_time_unix_nano=start + rng.randrange(10**9),
        )  # fmt: skip
        span.attributes.extend(_observed_attributes(rng, rng.choice((0.2, 0.5, 0.9))))
        if rng.random() < 0.4:  # failures too, with messages longer than those kept
            span.status.code = rng.randrange(3)
            span.status.message = rng.choice(("", "rejected 42", "Überweisung 7 " * 400))
    return request


def _bodies() -> list[bytes]:
    rng = random.Random(20261127)
    return (
        [_request(rng).SerializeToString() for _ in range(3000)]
        + [_stage_request(rng).SerializeToString() for _ in range(3000)]
        + encoded_batches(4)
    )


@pytest.mark.parametrize("window", _WINDOWS.values(), ids=_WINDOWS.keys())
def test_batches_are_those_of_the_python_path(window: TimeWindow) -> None:
    straight = observed_straight = rows_in_c = observations_in_c = failures_in_c = 0
    for body in _bodies():
        resources = _read(body)  # every span as values
        assert resources is not None
        batch = decode_traces(body, PROTOBUF, _OBSERVER, window)
        assert _comparable(batch) == _comparable(_python_only(resources, window)), body.hex()
        straight += batch.encoded_span_count
        observed_straight += len(_observations(batch)) - len(batch.observations)
        rows, observations, failures = _rows_in_c(resources, window)
        rows_in_c, observations_in_c = rows_in_c + rows, observations_in_c + observations
        failures_in_c += failures
    assert straight > 10 and rows_in_c > straight, (straight, rows_in_c)
    assert observed_straight > 10, observed_straight
    assert observations_in_c > 10 and failures_in_c > 10, (observations_in_c, failures_in_c)


def test_damaged_bodies_give_the_python_paths_batch() -> None:
    # Whatever the compiled reader writes straight, it writes only of bodies it reads.
    rng = random.Random(13)
    window = _WINDOWS["all times"]
    bodies = _bodies()[3000:3300] + encoded_batches(1)
    checked = 0
    for body in bodies:
        for _ in range(20):
            damaged = _damaged(rng, body)
            resources = _read(damaged)
            if resources is None:
                continue  # the protobuf runtime decides, as test_wire_reader checks
            batch = decode_traces(damaged, PROTOBUF, _OBSERVER, window)
            assert _comparable(batch) == _comparable(_python_only(resources, window))
            checked += 1
    assert checked > 200, checked

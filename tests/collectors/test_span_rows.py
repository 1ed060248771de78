"""Spans that need nothing but a row get it in C (collectors._wire.span_rows); the batch is
exactly the one the Python path alone builds, whatever the spans hold."""

from __future__ import annotations

import random

import pytest

from bench.workload import encoded_batches
from collectors._compiled import wire
from collectors.batch import Batch
from collectors.mapping import AttributeMap
from collectors.observations import Observer
from collectors.otlp import PROTOBUF
from collectors.traces import _add_span, decode_spans, read_traces, resource_key
from collectors.window import TimeWindow
from tests.collectors.test_wire_reader import _request

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


def _comparable(batch: Batch) -> tuple:
    return (
        sorted(map(repr, batch.spans)),
        sorted(map(repr, batch.observations)),
        sorted(map(repr, batch.dead_letters)),
        batch.resources,
        batch.days,
        batch.rejected,
        batch.reasons,
    )


def _rows_in_c(resources: list, window: TimeWindow) -> int:
    rows: list[tuple] = []
    for res_attrs, spans in resources:
        wire.span_rows(spans, _OBSERVER.readable(res_attrs), "s", None,
                       _OBSERVER.correlation_keys, _OBSERVER.stage_keys,
                       max(window.earliest_ns, 0), min(window.latest_ns, 2**64 - 1), rows,
                       set())  # fmt: skip
    return len(rows)


def _bodies() -> list[bytes]:
    rng = random.Random(20261127)
    return [_request(rng).SerializeToString() for _ in range(3000)] + encoded_batches(4)


@pytest.mark.parametrize("window", _WINDOWS.values(), ids=_WINDOWS.keys())
def test_batches_are_those_of_the_python_path(window: TimeWindow) -> None:
    in_c = 0
    for body in _bodies():
        resources = read_traces(body, PROTOBUF, _OBSERVER)
        batch = decode_spans(resources, _OBSERVER, window)
        assert _comparable(batch) == _comparable(_python_only(resources, window)), body.hex()
        in_c += _rows_in_c(resources, window)
    assert in_c > 10  # the C path was taken, not only the Python one

"""The compiled reader held against the protobuf runtime: the batch each path gives for a
body, as the rows the writer would send. Used by the differential tests and the fuzzer.

jsonb is compared as the document it holds: the reader spells some numbers as Python's
repr does (1e+308), orjson otherwise (1e308); PostgreSQL stores the same number.
"""

from __future__ import annotations

import orjson

from collectors import otlp
from collectors._pgtypes import CopyRows
from collectors.batch import DEAD_LETTERS, OBSERVATIONS, RESOURCES, SPANS, Batch, Staging
from collectors.otlp import PROTOBUF
from collectors.traces import decode_spans, decode_traces, resource_spans
from collectors.window import TimeWindow
from tests.support.random_otlp import OBSERVER, read_compiled

WINDOWS = {
    "all times": TimeWindow(0, 2**64),
    "some times": TimeWindow(2**62, 2**63),
    "beyond 64 bits": TimeWindow(-(2**70), 2**70),
}

Comparable = tuple[object, ...]


def runtime_batch(body: bytes, window: TimeWindow) -> Batch | None:
    """The batch of the protobuf runtime's path, None when it refuses the body."""
    try:
        request = otlp.parse(body, PROTOBUF, otlp.TRACES_REQUEST)
    except otlp.BadRequest:
        return None
    return decode_spans(resource_spans(request), OBSERVER, window)


def compiled_batch(body: bytes, window: TimeWindow) -> Batch | None:
    """The collector's batch when the compiled reader reads the body, else None."""
    if read_compiled(body) is None:
        return None
    return decode_traces(body, PROTOBUF, OBSERVER, window)


def _sent(staging: Staging, rows: list, encoded: list | None = None) -> list[tuple]:
    """Rows as the writer sends them, each a tuple of its binary COPY fields (jsonb as
    the value it holds), in a stable order."""
    data = CopyRows(staging.types, rows, encoded or ()).data
    sent, at = [], 19  # past the COPY header
    while data is not None and (columns := int.from_bytes(data[at : at + 2], signed=True)) != -1:
        at += 2
        row: list[object] = []
        for type_ in staging.types[:columns]:
            size = int.from_bytes(data[at : at + 4], signed=True)
            value = None if size == -1 else data[at + 4 : at + 4 + size]
            row.append(orjson.loads(value[1:]) if value and type_ == "jsonb" else value)
            at += 4 + max(size, 0)
        sent.append(tuple(row))
    return sorted(sent, key=repr)


def comparable(batch: Batch | None) -> Comparable | None:
    """Everything the collector would store or answer for `batch`."""
    if batch is None:
        return None
    return (
        _sent(SPANS, batch.spans, batch.encoded_spans),
        _sent(OBSERVATIONS, batch.observations),
        _sent(DEAD_LETTERS, batch.dead_letters),
        _sent(RESOURCES, list(batch.resources.values())),
        batch.days,
        batch.rejected,
        batch.reasons,
    )

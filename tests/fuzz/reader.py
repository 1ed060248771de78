"""`make fuzz`: the compiled reader against the protobuf runtime on mutated OTLP bodies.

libFuzzer (through atheris) mutates export requests, starting from random, stage-shaped
and demo bodies, and keeps the ones that reach new code. Each body must give the same
verdict and rows on both paths: a body the compiled reader reads gives the runtime's batch
(the same COPY rows, rejections and reasons), one the runtime refuses the reader never
reads, and neither path raises. Any difference stops the run with the body saved under
build/fuzz/. The corpus it grows (build/fuzz/corpus) is kept, so a longer run on demand
goes on where the last one stopped.

Coverage guidance reaches the Python side (the collector's decoding); the extension is not
instrumented, as that needs clang's -fsanitize=fuzzer-no-link, which gcc lacks.

    python -m tests.fuzz.reader -max_total_time=600   # what `make fuzz` runs
"""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import atheris
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

with atheris.instrument_imports(include=["collectors"]):
    from tests.support.differential import WINDOWS, comparable, compiled_batch, runtime_batch
from collectors import _compiled
from demo.workload import encoded_batches
from tests.support.random_otlp import random_request, stage_request

OUTPUT = Path("build/fuzz")
CORPUS = OUTPUT / "corpus"
_WINDOWS = list(WINDOWS.values())


def _demo_seeds(spans_each: int = 3) -> list[bytes]:
    """The demo's bodies cut down to a few spans each (whole ones are 140 kB: slow to mutate)."""
    seeds = []
    for body in encoded_batches(2):
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                del scope.spans[spans_each:]
        seeds.append(request.SerializeToString())
    return seeds


def _seed(corpus: Path) -> None:
    """Fills an empty corpus with the bodies the differential tests start from."""
    if corpus.is_dir() and any(corpus.iterdir()):
        return
    corpus.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20261202)
    bodies = [random_request(rng).SerializeToString() for _ in range(100)]
    bodies += [stage_request(rng).SerializeToString() for _ in range(100)]
    bodies += _demo_seeds()
    for number, body in enumerate(bodies):
        (corpus / f"seed-{number:03}").write_bytes(body)


def check(body: bytes) -> None:
    """One input: both paths must agree on it (the window varies with the body's length).
    The runtime's path runs on every body, so it too is fuzzed: it may refuse a body
    (None), never raise."""
    window = _WINDOWS[len(body) % len(_WINDOWS)]
    expected = comparable(runtime_batch(body, window))
    compiled = compiled_batch(body, window)
    if compiled is not None and comparable(compiled) != expected:
        raise AssertionError(f"the compiled reader differs from the runtime on {body.hex()}")


def main() -> None:
    if _compiled.built is None:
        sys.exit("make fuzz: the compiled reader (collectors/_wire.c) is not built")
    _seed(CORPUS)
    logging.disable(logging.WARNING)  # the collector's warnings about refused dead letters
    flags = [f"-artifact_prefix={OUTPUT}/", "-timeout=20", "-rss_limit_mb=2048"]
    atheris.Setup([sys.argv[0], *flags, *sys.argv[1:], str(CORPUS)], check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

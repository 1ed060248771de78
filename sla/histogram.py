"""Percentiles from the sparse log-scale latency histograms that rollups keep.

Bucket 0 holds [0, 1 ms); bucket i >= 1 holds [GAMMA^(i-1), GAMMA^i) ms (the database's
`q2c_latency_bucket`). Reporting each bucket by its geometric midpoint keeps the relative
error of any percentile within sqrt(GAMMA) - 1, about 1 %.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

GAMMA = 1.02
PERCENTILES = (50, 90, 95, 99)  # reported of every latency


def representative_ms(bucket: int) -> float:
    """The value reported for a bucket: its geometric midpoint (0.5 ms for bucket 0)."""
    if bucket == 0:
        return 0.5
    return GAMMA ** (bucket - 0.5)


def merge(histograms: Iterable[Mapping[str, int]]) -> Counter[int]:
    """Sum sparse histograms (JSON object keys are bucket indexes as text)."""
    total: Counter[int] = Counter()
    for histogram in histograms:
        for bucket, count in histogram.items():
            total[int(bucket)] += int(count)
    return total


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The q-th percentile (0 < q <= 100, nearest rank) in ms, or None when empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return representative_ms(bucket)
    raise AssertionError("unreachable: rank exceeds total")


def count_within(histogram: Mapping[int, int], limit_ms: float) -> int:
    """How many latencies are at most `limit_ms` (buckets judged by their midpoint)."""
    return sum(n for bucket, n in histogram.items() if representative_ms(bucket) <= limit_ms)

"""Which record timestamps the collector accepts: not older than retention keeps, and not
further in the future than clocks plausibly drift."""

from __future__ import annotations

import time
from dataclasses import dataclass

NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass(frozen=True)
class TimeWindow:
    """Accepted range of record times, in Unix nanoseconds."""

    earliest_ns: int
    latest_ns: int

    @classmethod
    def around_now(cls, retention_days: int, max_future_seconds: int) -> TimeWindow:
        """From the oldest day retention keeps to `max_future_seconds` ahead of now."""
        now = time.time_ns()
        return cls(now - retention_days * NS_PER_DAY, now + max_future_seconds * 1_000_000_000)

    def rejects(self, time_ns: int) -> str | None:
        """Why `time_ns` is refused, or None when it is acceptable."""
        if time_ns < self.earliest_ns:
            return "timestamp older than the retention period"
        if time_ns > self.latest_ns:
            return "timestamp too far in the future"
        return None

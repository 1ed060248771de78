"""Daily trends per process from the daily rollups: throughput and objective latency."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from sla import histogram
from sla.policy import Policy


def daily_trends(
    engine: Engine, policy: Policy, days: int, now: datetime | None = None
) -> list[dict]:
    """One row per (day, process): transactions started, completed, errors, and p50/p95 of
    the objective's stage pair."""
    end = now or datetime.now(UTC)
    start = (end - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT bucket_start, process, from_stage, to_stage, count, error_count, histogram "
                "FROM rollups WHERE bucket_seconds = 86400 AND bucket_start >= :start "
                "AND bucket_start < :end"
            ),
            {"start": start, "end": end},
        ).all()
    by_day: dict[tuple[datetime, str], dict] = defaultdict(
        lambda: {"started": 0, "completed": 0, "errors": 0, "p50_ms": None, "p95_ms": None}
    )
    for day, process, from_stage, to_stage, count, errors, hist in rows:
        if process not in policy.processes:
            continue
        spec = policy.processes[process]
        stages = spec.stage_names()
        entry = by_day[(day, process)]
        if from_stage == "":
            entry["errors"] += errors
            if to_stage == stages[0]:
                entry["started"] += count
            if to_stage == stages[-1]:
                entry["completed"] += count
        elif (from_stage, to_stage) == (spec.objective.from_stage, spec.objective.to_stage):
            merged = histogram.merge([hist])
            entry["p50_ms"] = histogram.percentile(merged, 50)
            entry["p95_ms"] = histogram.percentile(merged, 95)
    return [
        {"day": day, "process": process, **values}
        for (day, process), values in sorted(by_day.items())
    ]

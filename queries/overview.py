"""Readers for the overview page: what the console has to show so far."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text


@dataclass(frozen=True)
class TelemetryPresence:
    """Whether any telemetry has arrived, and when the latest did."""

    has_spans: bool
    has_log_records: bool
    transactions: int
    last_ingested_at: datetime | None

    @property
    def empty(self) -> bool:
        """True until the first span or log record arrives."""
        return not (self.has_spans or self.has_log_records)


_PRESENCE = text(
    """
    SELECT EXISTS (SELECT 1 FROM spans) AS has_spans,
           EXISTS (SELECT 1 FROM log_records) AS has_log_records,
           (SELECT count(*) FROM transactions) AS transactions,
           (SELECT max(ingested_at) FROM stage_events) AS last_ingested_at
    """
)


def telemetry_presence(engine: Engine) -> TelemetryPresence:
    """Cheap whether-anything-arrived check; EXISTS stops at the first row of a partition."""
    with engine.connect() as conn:
        row = conn.execute(_PRESENCE).one()
    return TelemetryPresence(
        has_spans=row.has_spans,
        has_log_records=row.has_log_records,
        transactions=row.transactions,
        last_ingested_at=row.last_ingested_at,
    )

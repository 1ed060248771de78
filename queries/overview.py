"""Readers for the overview page: whether the console has anything to show yet."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text


@dataclass(frozen=True)
class TelemetryPresence:
    """Whether any telemetry, and any transaction derived from it, has arrived."""

    has_spans: bool
    has_log_records: bool
    has_transactions: bool

    @property
    def empty(self) -> bool:
        """True until the first span or log record arrives."""
        return not (self.has_spans or self.has_log_records)


# EXISTS stops at the first row, so this costs the same with ten rows or ten million.
_PRESENCE = text(
    """
    SELECT EXISTS (SELECT 1 FROM spans) AS has_spans,
           EXISTS (SELECT 1 FROM log_records) AS has_log_records,
           EXISTS (SELECT 1 FROM transactions) AS has_transactions
    """
)


def telemetry_presence(engine: Engine) -> TelemetryPresence:
    """Cheap whether-anything-arrived check."""
    with engine.connect() as conn:
        row = conn.execute(_PRESENCE).one()
    return TelemetryPresence(row.has_spans, row.has_log_records, row.has_transactions)

"""The unit of storage: rows decoded from one request, ready for the writer.

Rows are plain tuples in the column order of the writer's staging tables, so that a batch
costs no more to build than it must and several batches merge by concatenation. Times and
JSON destined for timestamptz and jsonb columns are pre-encoded (collectors._pgtypes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Column order of each staging table; the writer's COPY statements use the same names.
SPAN_COLUMNS = (
    "correlation_id", "trace_id", "span_id", "start_time", "end_time", "parent_span_id", "name",
    "kind", "status_code", "status_message", "service_name", "resource_hash", "attributes",
    "events",
)  # fmt: skip
LOG_COLUMNS = (
    "correlation_id", "record_hash", "time", "observed_time", "trace_id", "span_id",
    "severity_number", "severity_text", "body", "attributes", "service_name", "resource_hash",
    "source",
)  # fmt: skip
# record_key names the stored span or log record an observation or dead letter came from:
# only a record stored for the first time makes its observation count.
OBSERVATION_COLUMNS = (
    "record_key", "correlation_id", "process", "stage", "system", "at_ns", "ok", "business",
    "error_type", "message", "fingerprint", "dead_letter", "trace_id", "span_id",
)  # fmt: skip
DEAD_LETTER_COLUMNS = (
    "record_key", "correlation_id", "process", "stage", "system", "at_ns", "target_url",
    "method", "headers", "content_type", "payload", "error_type", "error_message",
    "fingerprint",
)  # fmt: skip
RESOURCE_COLUMNS = ("resource_hash", "service_name", "attributes")


@dataclass
class Batch:
    """Rows of one or more requests; `rejected` counts records refused before storage."""

    spans: list[tuple] = field(default_factory=list)
    # Spans the compiled reader wrote straight as binary COPY tuples, and how many.
    encoded_spans: list[bytes] = field(default_factory=list)
    encoded_span_count: int = 0
    logs: list[tuple] = field(default_factory=list)
    observations: list[tuple] = field(default_factory=list)
    encoded_observations: list[bytes] = field(default_factory=list)  # as binary COPY tuples
    dead_letters: list[tuple] = field(default_factory=list)
    resources: dict[bytes, tuple] = field(default_factory=dict)
    days: set[int] = field(default_factory=set)  # UTC days (since the epoch) rows fall on
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        """Count one refused record, keeping the first few distinct reasons for the client."""
        self.rejected += 1
        if len(self.reasons) < 5 and reason not in self.reasons:
            self.reasons.append(reason)

    def extend(self, other: Batch) -> None:
        """Append `other`'s rows (used to group several requests into one transaction)."""
        self.spans += other.spans
        self.encoded_spans += other.encoded_spans
        self.encoded_span_count += other.encoded_span_count
        self.logs += other.logs
        self.observations += other.observations
        self.encoded_observations += other.encoded_observations
        self.dead_letters += other.dead_letters
        self.resources.update(other.resources)
        self.days |= other.days

    @property
    def record_count(self) -> int:
        """Spans and log records to store."""
        return len(self.spans) + self.encoded_span_count + len(self.logs)

    def error_message(self) -> str:
        """The partial-success message: how many records were refused, and why."""
        if not self.rejected:
            return ""
        return f"{self.rejected} record(s) rejected: " + "; ".join(self.reasons)

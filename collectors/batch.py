"""The unit of storage: rows decoded from one request, ready for the writer, and the one
declaration of each staging table they are COPYed into.

Each staging table is declared once, as a NamedTuple of its rows whose fields carry their
PostgreSQL type (`Annotated[…, "text"]`): the DDL, the COPY column lists, the binary COPY
encoder's kinds and the compiled reader's column layout are all derived from it (`Staging`).
Values destined for timestamptz and jsonb columns are pre-encoded (collectors._pgtypes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, NamedTuple, get_type_hints

Text = Annotated[str, "text"]
MaybeText = Annotated[str | None, "text"]
Bytea = Annotated[bytes, "bytea"]
MaybeBytea = Annotated[bytes | None, "bytea"]
Int2 = Annotated[int, "int2"]
Int8 = Annotated[int, "int8"]
Bool = Annotated[bool, "bool"]
Timestamptz = Annotated[int, "timestamptz"]  # microseconds since 2000-01-01 (pg_time)
MaybeTimestamptz = Annotated[int | None, "timestamptz"]
Jsonb = Annotated[bytes, "jsonb"]  # version byte, then JSON text (jsonb())
MaybeJsonb = Annotated[bytes | None, "jsonb"]


class SpanRow(NamedTuple):
    """A span: `spans` and `_in_spans`. The first three columns come from Python, the rest
    may come already encoded from the compiled reader (see collectors.traces.LAYOUT)."""

    correlation_id: Text
    service_name: Text
    resource_hash: MaybeBytea
    trace_id: Bytea
    span_id: Bytea
    start_time: Timestamptz
    end_time: Timestamptz
    parent_span_id: MaybeBytea
    name: Text
    kind: Int2
    status_code: Int2
    status_message: MaybeText
    attributes: Jsonb
    events: MaybeJsonb


class LogRow(NamedTuple):
    """A log record: `log_records` and `_in_logs`."""

    correlation_id: Text
    record_hash: Bytea
    time: Timestamptz
    observed_time: MaybeTimestamptz
    trace_id: MaybeBytea
    span_id: MaybeBytea
    severity_number: Int2
    severity_text: MaybeText
    body: MaybeJsonb
    attributes: Jsonb
    service_name: Text
    resource_hash: MaybeBytea
    source: Text


class ObservationRow(NamedTuple):
    """What a span or log record says of a stage: `_in_obs`. `record_key` names the stored
    record it came from: only a record stored for the first time makes it count."""

    record_key: Bytea
    correlation_id: Text
    process: Text
    stage: Text
    system: Text
    at_ns: Int8
    ok: Bool
    business: Jsonb
    error_type: MaybeText
    message: MaybeText
    fingerprint: MaybeText
    dead_letter: Bool
    trace_id: MaybeBytea
    span_id: MaybeBytea


class DeadLetterRow(NamedTuple):
    """A dead-lettered message: `_in_dead`."""

    record_key: Bytea
    correlation_id: Text
    process: Text
    stage: Text
    system: Text
    at_ns: Int8
    target_url: MaybeText
    method: Text
    headers: Jsonb
    content_type: MaybeText
    payload: MaybeText
    error_type: MaybeText
    error_message: MaybeText
    fingerprint: MaybeText
    target_error: MaybeText


class ResourceRow(NamedTuple):
    """An OTLP resource, stored once by hash: `_in_resources`."""

    resource_hash: Bytea
    service_name: Text
    attributes: Jsonb


@dataclass(frozen=True)
class Staging:
    """A staging table: its name and its row type, from which all else is derived."""

    table: str
    row: type[tuple]

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """Column names, in COPY order."""
        return tuple(self.row._fields)  # type: ignore[attr-defined]

    @cached_property
    def types(self) -> tuple[str, ...]:
        """PostgreSQL types of the columns."""
        hints = get_type_hints(self.row, include_extras=True)
        return tuple(hints[name].__metadata__[0] for name in self.columns)

    @property
    def ddl(self) -> str:
        """CREATE TEMP TABLE of this staging table."""
        listed = ", ".join(f"{c} {t}" for c, t in zip(self.columns, self.types, strict=True))
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.table} ({listed})"


SPANS = Staging("_in_spans", SpanRow)
LOGS = Staging("_in_logs", LogRow)
OBSERVATIONS = Staging("_in_obs", ObservationRow)
DEAD_LETTERS = Staging("_in_dead", DeadLetterRow)
RESOURCES = Staging("_in_resources", ResourceRow)
STAGINGS = (SPANS, LOGS, OBSERVATIONS, DEAD_LETTERS, RESOURCES)

# A span whose columns after the first three the compiled reader encoded: (correlation_id,
# service_name, resource_hash, the rest as binary COPY fields).
EncodedSpan = tuple[str, str, bytes | None, bytes]


@dataclass
class Batch:
    """Rows of one or more requests; `rejected` counts records refused before storage."""

    spans: list[SpanRow] = field(default_factory=list)
    encoded_spans: list[EncodedSpan] = field(default_factory=list)
    logs: list[LogRow] = field(default_factory=list)
    observations: list[ObservationRow] = field(default_factory=list)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    resources: dict[bytes, ResourceRow] = field(default_factory=dict)
    days: set[int] = field(default_factory=set)  # UTC days (since the epoch) rows fall on
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # of records stored all the same

    def reject(self, reason: str) -> None:
        """Count one refused record, keeping the first few distinct reasons for the client."""
        self.rejected += 1
        if len(self.reasons) < 5 and reason not in self.reasons:
            self.reasons.append(reason)

    def warn(self, warning: str) -> None:
        """Note what a stored record lost (the first few distinct notes, for the client)."""
        if len(self.warnings) < 5 and warning not in self.warnings:
            self.warnings.append(warning)

    def extend(self, other: Batch) -> None:
        """Append `other`'s rows (used to group several requests into one transaction)."""
        self.spans += other.spans
        self.encoded_spans += other.encoded_spans
        self.logs += other.logs
        self.observations += other.observations
        self.dead_letters += other.dead_letters
        self.resources.update(other.resources)
        self.days |= other.days

    @property
    def record_count(self) -> int:
        """Spans and log records to store."""
        return len(self.spans) + len(self.encoded_spans) + len(self.logs)

    def error_message(self) -> str:
        """The partial-success message: how many records were refused, and why; then what
        stored ones lost (OTLP's partial success carries warnings with nothing rejected)."""
        parts = [f"{self.rejected} record(s) rejected: " + "; ".join(self.reasons)]
        if self.warnings:
            parts.append("stored with warnings: " + "; ".join(self.warnings))
        return ". ".join(parts[bool(not self.rejected) :])

"""`q2c ingest`: loading integration-log files through the same writer as the collector."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field

from collectors.integration_logs import ParsedLog, parse_records, split_records
from collectors.window import TimeWindow
from collectors.writer import TelemetryWriter

CHUNK_RECORDS = 5_000  # records per transaction


@dataclass
class IngestReport:
    """What a load did: counts, and (source, line, reason) for each refused record."""

    accepted: int = 0
    rejected: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, parsed: ParsedLog, source: str) -> None:
        """Account for one stored chunk."""
        self.accepted += parsed.accepted
        self.rejected.extend((source, line, reason) for line, reason in parsed.errors)


def ingest_stream(
    stream: io.BufferedReader,
    source: str,
    writer: TelemetryWriter,
    window: TimeWindow,
    report: IngestReport,
) -> Iterator[int]:
    """Load one file of JSON lines (or one JSON array), yielding bytes consumed as it goes.

    Each chunk is committed before the next is read, so an interrupted load can simply be
    run again: records already stored are recognised and not stored twice.
    """
    if stream.peek(256).lstrip().startswith(b"["):
        body = stream.read()
        parsed = parse_records(split_records(body), window)
        writer.write(parsed.batch)
        report.add(parsed, source)
        yield len(body)
        return
    records: list[tuple[int, object]] = []
    consumed = 0
    for line_no, line in enumerate(stream, start=1):
        consumed += len(line)
        records.extend(split_records(line, first_line=line_no))
        if len(records) >= CHUNK_RECORDS:
            _store(records, source, writer, window, report)
            yield consumed
            records, consumed = [], 0
    _store(records, source, writer, window, report)
    yield consumed


def _store(
    records: list[tuple[int, object]],
    source: str,
    writer: TelemetryWriter,
    window: TimeWindow,
    report: IngestReport,
) -> None:
    parsed = parse_records(records, window)
    writer.write(parsed.batch)
    report.add(parsed, source)

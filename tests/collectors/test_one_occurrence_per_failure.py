"""One failure is one occurrence, however many records report it: a failure reported by
its span and by its log record counts once, in either arrival order or in one batch; two
spans failing at the same moment are two failures; migration 0010 removes the duplicates
stored before."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from collectors.batch import Batch
from collectors.logs import decode_logs
from collectors.mapping import AttributeMap
from collectors.observations import Observer
from collectors.otlp import PROTOBUF
from collectors.traces import decode_traces
from collectors.window import TimeWindow
from collectors.writer import PostgresWriter
from q2c import migrate
from sla.policy import load_policy
from tests.support.otlp import dead_letter_record, logs_request, stage_span, traces_request

_OBSERVER = Observer(AttributeMap())
_WINDOW = TimeWindow(0, 2**63 - 1)
_AT = 25  # seconds after BASE_NS: when the posting failed
_SPAN_SEQ = 200


def _span(seq: int = _SPAN_SEQ) -> Batch:
    """The failing posting's span (the same fingerprint as the dead letter's record)."""
    span = stage_span(
        "INV-50",
        "invoice_posting",
        "invoice_recorded",
        "erp",
        at_s=_AT,
        seq=seq,
        error="period 2026-11 is closed",
        error_type="PostingRejected",
    )
    return decode_traces(traces_request(span).SerializeToString(), PROTOBUF, _OBSERVER, _WINDOW)


def _log() -> Batch:
    """The same failure as the middleware logged it, dead-lettered, without a trace."""
    record = dead_letter_record(
        "INV-50", at_s=_AT, target="http://127.0.0.1:9/erp", payload='{"invoice": "INV-50"}'
    )
    return decode_logs(logs_request(record), _OBSERVER, _WINDOW)


def _both() -> Batch:
    batch = _span()
    batch.extend(_log())
    return batch


def _write(url: str, *batches: Batch) -> None:
    writer = PostgresWriter(url, load_policy().catalog())
    try:
        for batch in batches:
            writer.write(batch)
    finally:
        writer.close()


def _stored(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return (
            conn.execute("SELECT kind, occurrences FROM exceptions").fetchall(),
            conn.execute("SELECT occurrences, trace_id FROM exception_occurrences").fetchall(),
            conn.execute(
                "SELECT count(*) FROM dead_letters d JOIN exceptions e "
                "ON e.correlation_id = d.correlation_id AND e.id = d.exception_id"
            ).fetchone()[0],
        )


def test_a_failure_reported_by_its_span_and_its_log_record_is_one_occurrence(
    new_db_url: Callable[[], str],
) -> None:
    trace_id = _SPAN_SEQ.to_bytes(16, "big")
    expected = ([("dead_letter", 1)], [(1, trace_id)], 1)

    span_first, log_first, together = new_db_url(), new_db_url(), new_db_url()
    _write(span_first, _span(), _log())
    _write(log_first, _log(), _span())
    _write(together, _both())

    assert _stored(span_first) == expected
    assert _stored(log_first) == expected  # the stored occurrence took the span's trace
    assert _stored(together) == expected
    _write(span_first, _log(), _span())  # delivered again: nothing changes
    assert _stored(span_first) == expected


def test_two_spans_failing_at_the_same_moment_are_two_failures(
    new_db_url: Callable[[], str],
) -> None:
    url = new_db_url()

    _write(url, _span(300), _span(400), _log())

    exceptions, occurrences, _ = _stored(url)
    assert exceptions == [("dead_letter", 2)]
    assert sorted(trace for _, trace in occurrences) == [
        (300).to_bytes(16, "big"),
        (400).to_bytes(16, "big"),
    ]


def test_the_migration_removes_the_duplicates_stored_before(empty_db: str) -> None:
    migrate.upgrade(empty_db, "0009")
    # Today's writer reads a column of 0014 (ignores until a recurrence): lent for the write.
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE exceptions ADD ignored_until_recurs boolean DEFAULT false")
    _write(empty_db, _span(300), _span(400))
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE exceptions DROP ignored_until_recurs")
        # As earlier versions stored the log record of the first span's failure: a second
        # occurrence without a trace, counted by the exception.
        conn.execute(
            "INSERT INTO exception_occurrences (correlation_id, record_key, exception_id, "
            "stage, fingerprint, process, system, kind, occurred_at, error_type, message) "
            "SELECT correlation_id, 'log-record', exception_id, stage, fingerprint, process, "
            "system, kind, occurred_at, error_type, message FROM exception_occurrences "
            "WHERE trace_id = %s",
            ((300).to_bytes(16, "big"),),
        )
        conn.execute("UPDATE exceptions SET occurrences = occurrences + 1")
        assert conn.execute("SELECT occurrences FROM exceptions").fetchone() == (3,)

    migrate.upgrade(empty_db)

    exceptions, occurrences, _ = _stored(empty_db)
    assert exceptions == [("error", 2)]
    assert len(occurrences) == 2 and all(trace for _, trace in occurrences)

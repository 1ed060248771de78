"""Readers for the trace explorer and the stage dashboards: finding a transaction by its
correlation ID or a business key, its journey across systems, and stalled transactions."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, text

from q2c.masking import configured

_KEY_COLUMNS = ("order_id", "invoice_id", "customer_id", "payment_id")
_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
_TRANSACTION_COLUMNS = (
    "correlation_id, process, current_stage, status, started_at, completed_at, last_event_at, "
    "customer_id, order_id, invoice_id, payment_id, amount::float8 AS amount, currency, "
    "legal_entity"
)


_SPAN_COLUMNS = (
    "encode(trace_id, 'hex') AS trace_id, encode(span_id, 'hex') AS span_id, "
    "encode(parent_span_id, 'hex') AS parent_span_id, name, service_name, "
    "coalesce(attributes->>'q2c.system', service_name) AS system, "
    "attributes->>'q2c.stage' AS stage, start_time, end_time, kind, status_code, "
    "status_message, attributes, coalesce(events, '[]') AS events"
)


def _qualified(alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in _TRANSACTION_COLUMNS.split(","))


def find_transactions(engine: Engine, key: str, limit: int = 50) -> list[dict]:
    """Transactions whose correlation ID or a business key (order, invoice, customer,
    payment) is `key` as typed, in upper case or in lower case, or that a trace with the
    trace ID `key` (32 hex digits) belongs to, newest first; each lookup is an index probe."""
    key = key.strip()
    if not key:
        return []
    keys = list(dict.fromkeys((key, key.upper(), key.lower())))
    trace_id = bytes.fromhex(key) if _TRACE_ID.fullmatch(key) else None
    probes = ["SELECT correlation_id FROM transactions WHERE correlation_id = ANY (:keys)"] + [
        f"SELECT correlation_id FROM transactions WHERE {column} = ANY (:keys)"
        for column in _KEY_COLUMNS
    ]
    if trace_id is not None:
        probes.append("SELECT correlation_id FROM spans WHERE trace_id = :trace_id")
    query = text(
        f"SELECT {_TRANSACTION_COLUMNS} FROM transactions "
        f"WHERE correlation_id IN ({' UNION '.join(probes)}) "
        "ORDER BY started_at DESC NULLS LAST LIMIT :limit"
    )
    params = {"keys": keys, "trace_id": trace_id, "limit": limit}
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query, params)]
        if rows:
            return rows
        # Not a derived transaction (no stage seen): it may still be a trace's correlation ID.
        found = conn.execute(
            text(
                "SELECT correlation_id FROM spans WHERE correlation_id = ANY (:keys) "
                "OR trace_id = :trace_id LIMIT 1"
            ),
            params,
        ).first()
    return [{"correlation_id": found[0], "process": None, "status": "untracked"}] if found else []


def journey(engine: Engine, correlation_id: str) -> dict[str, Any]:
    """Everything known about one transaction: spans, log records, stage events,
    exceptions and replays, each in time order."""
    params = {"c": correlation_id}
    queries = {
        # The transaction's spans and, in the same traces, the spans that carry no
        # correlation attribute (an HTTP client's, a database driver's: stored under
        # their trace ID, see docs/instrumenting.md), so that the waterfall nests them.
        "spans": "WITH tagged AS (SELECT * FROM spans WHERE correlation_id = :c "
        "ORDER BY start_time LIMIT 2000), "
        # (= ANY (ARRAY(...)): index probes; an IN (subquery) plans a hash join over a scan.)
        "untagged AS (SELECT * FROM spans WHERE correlation_id = ANY "
        "(ARRAY(SELECT DISTINCT encode(trace_id, 'hex') FROM tagged)) AND correlation_id <> :c "
        "LIMIT 2000) "
        f"SELECT {_SPAN_COLUMNS} FROM tagged UNION ALL SELECT {_SPAN_COLUMNS} FROM untagged "
        "ORDER BY start_time",
        "logs": "SELECT time, severity_text, body, service_name, source, "
        "attributes->>'q2c.stage' AS stage, encode(trace_id, 'hex') AS trace_id, "
        "encode(span_id, 'hex') AS span_id FROM log_records WHERE correlation_id = :c "
        "ORDER BY time LIMIT 2000",
        "stages": "SELECT reached_at, stage, system, status, business FROM stage_events "
        "WHERE correlation_id = :c ORDER BY reached_at, stage, system",
        "exceptions": "SELECT id, kind, stage, status, impact, owner, message, first_seen, "
        "occurrences FROM exceptions WHERE correlation_id = :c ORDER BY first_seen",
        "dead_letters": "SELECT id, stage, system, occurred_at, status, error_type, "
        "error_message FROM dead_letters WHERE correlation_id = :c ORDER BY occurred_at",
        "replays": "SELECT r.id, r.dead_letter_id, r.status, r.attempts, r.requested_by, "
        "r.requested_at, r.finished_at, r.response_code FROM replays r "
        "WHERE r.correlation_id = :c ORDER BY r.requested_at",
    }
    with engine.connect() as conn:
        result: dict[str, Any] = {
            name: [dict(r._mapping) for r in conn.execute(text(sql), params)]
            for name, sql in queries.items()
        }
        row = conn.execute(
            text(f"SELECT {_TRANSACTION_COLUMNS} FROM transactions WHERE correlation_id = :c"),
            params,
        ).one_or_none()
    result["transaction"] = dict(row._mapping) if row else {"correlation_id": correlation_id}
    masking = configured()  # a dead letter's log record carries its payload
    for log_row in result["logs"]:
        log_row["body"] = masking.value(log_row["body"])
    for span in result["spans"]:
        span["status_message"] = masking.text(span["status_message"])
        span["attributes"] = masking.value(span["attributes"])
        span["events"] = masking.value(span["events"])
    for exception in result["exceptions"]:
        exception["message"] = masking.text(exception["message"])
    for letter in result["dead_letters"]:
        letter["error_message"] = masking.text(letter["error_message"])
    return result


def recent_transactions(engine: Engine, failing: bool = False, limit: int = 15) -> list[dict]:
    """The transactions that moved most recently (or, `failing`, those with an open
    exception), newest first."""
    failing_only = (
        "AND EXISTS (SELECT 1 FROM exceptions e WHERE e.correlation_id = t.correlation_id "
        "AND q2c_is_open(e.status)) "
        if failing
        else ""
    )
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT {_qualified('t')} FROM transactions t "
                f"WHERE t.last_event_at IS NOT NULL {failing_only}"
                "ORDER BY t.last_event_at DESC LIMIT :limit"
            ),
            {"limit": limit},
        )
        return [dict(r._mapping) for r in rows]


def stalled_transactions(engine: Engine, limit: int = 200) -> list[dict]:
    """Transactions waiting past their stage's limit, longest waiting first."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT {_qualified('t')}, e.stage AS waiting_for, e.message, e.first_seen "
                "AS stalled_since FROM transactions t JOIN exceptions e "
                "ON e.correlation_id = t.correlation_id AND e.kind = 'stalled' "
                "AND q2c_is_open(e.status) "
                "WHERE t.status = 'stalled' ORDER BY t.last_event_at LIMIT :limit"
            ),
            {"limit": limit},
        )
        return [dict(r._mapping) for r in rows]

"""SQL of the telemetry writer: staging tables, and the set-wise merge of staged rows into
the canonical model. Every statement is idempotent: staged rows already stored change nothing.
"""

from collectors.batch import (
    DEAD_LETTER_COLUMNS,
    LOG_COLUMNS,
    OBSERVATION_COLUMNS,
    RESOURCE_COLUMNS,
    SPAN_COLUMNS,
)

STAGING_TYPES = {
    "_in_spans": [
        "text",
        "bytea",
        "bytea",
        "timestamptz",
        "timestamptz",
        "bytea",
        "text",
        "int2",
        "int2",
        "text",
        "text",
        "bytea",
        "jsonb",
        "jsonb",
    ],
    "_in_logs": [
        "text",
        "bytea",
        "timestamptz",
        "timestamptz",
        "bytea",
        "bytea",
        "int2",
        "text",
        "jsonb",
        "jsonb",
        "text",
        "bytea",
        "text",
    ],
    "_in_obs": [
        "bytea",
        "text",
        "text",
        "text",
        "text",
        "int8",
        "bool",
        "jsonb",
        "text",
        "text",
        "text",
        "bool",
        "bytea",
        "bytea",
    ],
    "_in_dead": [
        "bytea",
        "text",
        "text",
        "text",
        "text",
        "int8",
        "text",
        "text",
        "jsonb",
        "text",
        "text",
        "text",
        "text",
        "text",
    ],
    "_in_resources": ["bytea", "text", "jsonb"],
}

STAGING_COLUMNS = {
    "_in_spans": SPAN_COLUMNS,
    "_in_logs": LOG_COLUMNS,
    "_in_obs": OBSERVATION_COLUMNS,
    "_in_dead": DEAD_LETTER_COLUMNS,
    "_in_resources": RESOURCE_COLUMNS,
}


# Staging tables live per connection, with the columns and types above. Only _new_obs,
# used by every transaction, empties itself at commit: PostgreSQL truncates every such
# table at every commit that touched a temporary table, so the others, used on rarer
# paths, are emptied by the writer right before it fills them.
STAGING = "\n".join(
    f"CREATE TEMP TABLE IF NOT EXISTS {table} ("
    + ", ".join(f"{column} {type_}" for column, type_ in
                zip(columns, STAGING_TYPES[table], strict=True))
    + ");"
    for table, columns in STAGING_COLUMNS.items()
) + """
CREATE TEMP TABLE IF NOT EXISTS _new_records (record_key bytea);
CREATE TEMP TABLE IF NOT EXISTS _new_obs (LIKE _in_obs) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS _catalog (
    process text, stage text, stage_index integer, is_last boolean,
    PRIMARY KEY (process, stage)
);
"""  # fmt: skip


# Observation times stay Unix nanoseconds (integers sort and aggregate cheaply); `_ts` turns
# them into timestamptz (microseconds, PostgreSQL's resolution).
def _ts(column: str) -> str:
    return f"(timestamptz 'epoch' + ({column} / 1000) * interval '1 microsecond')"


INSERT_RESOURCES = """
INSERT INTO resources (resource_hash, service_name, attributes)
SELECT DISTINCT ON (resource_hash) resource_hash, service_name, attributes FROM _in_resources
ORDER BY resource_hash
ON CONFLICT DO NOTHING
"""


def _merge_staged(table: str, staging: str, columns: tuple[str, ...], key: str) -> tuple[str, str]:
    """(INSERT of the staged rows not stored yet, the same noting each new row's `key` in
    _new_records: only records stored for the first time may count towards derived rows)."""
    listed = ", ".join(columns)
    insert = f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {staging} ON CONFLICT DO NOTHING"
    noting = (
        f"WITH stored AS ({insert} RETURNING {key} AS record_key) "
        "INSERT INTO _new_records SELECT record_key FROM stored"
    )
    return insert, noting


INSERT_SPANS, INSERT_SPANS_NOTING_NEW = _merge_staged(
    "spans", "_in_spans", SPAN_COLUMNS, "trace_id || span_id"
)
INSERT_LOGS, INSERT_LOGS_NOTING_NEW = _merge_staged(
    "log_records", "_in_logs", LOG_COLUMNS, "record_hash"
)

SELECT_NEW_OBSERVATIONS = """
INSERT INTO _new_obs
SELECT DISTINCT ON (o.record_key) o.*
FROM _in_obs o
WHERE o.record_key IN (SELECT record_key FROM _new_records)
ORDER BY o.record_key
"""

# A stage row keeps its best observation: a success before any failure, then the earliest,
# ties broken by content, so the outcome does not depend on the order deliveries arrive in.
_BETTER = (
    "((excluded.status = 'ok' AND se.status = 'error') OR (excluded.status = se.status AND "
    "(excluded.reached_at, excluded.business) < (se.reached_at, se.business)))"
)
UPSERT_STAGE_EVENTS = f"""
INSERT INTO stage_events AS se (correlation_id, stage, system, process, reached_at, status,
                                business, trace_id, span_id, last_ok_at)
SELECT DISTINCT ON (correlation_id, stage, system)
       correlation_id, stage, system, process, {_ts("at_ns")},
       CASE WHEN ok THEN 'ok' ELSE 'error' END, business, trace_id, span_id,
       max({_ts("at_ns")}) FILTER (WHERE ok) OVER (PARTITION BY correlation_id, stage, system)
FROM _new_obs
ORDER BY correlation_id, stage, system, ok DESC, at_ns, business
ON CONFLICT (correlation_id, stage, system) DO UPDATE SET
    process = CASE WHEN {_BETTER} THEN excluded.process ELSE se.process END,
    reached_at = CASE WHEN {_BETTER} THEN excluded.reached_at ELSE se.reached_at END,
    business = CASE WHEN {_BETTER} THEN excluded.business ELSE se.business END,
    trace_id = CASE WHEN {_BETTER} THEN excluded.trace_id ELSE se.trace_id END,
    span_id = CASE WHEN {_BETTER} THEN excluded.span_id ELSE se.span_id END,
    ingested_at = CASE WHEN {_BETTER} THEN clock_timestamp() ELSE se.ingested_at END,
    status = CASE WHEN {_BETTER} THEN excluded.status ELSE se.status END,
    last_ok_at = greatest(se.last_ok_at, excluded.last_ok_at)
"""


def _first_business(key: str, cast: str = "") -> str:
    return f"((array_agg(s.business->>'{key}') FILTER (WHERE s.business ? '{key}'))[1]){cast}"


# Transactions are recomputed from all their stage rows, so they are a pure function of them.
# Each transaction's rows are fetched through the stage_events primary key (a LATERAL
# aggregate cannot be turned into a join, so the plan never scans the table whatever the
# statistics say) and arrive sorted by (reached_at, stage, system); PostgreSQL aggregates in
# input order, so one sort serves every "first value reported" below.
UPSERT_TRANSACTIONS = f"""
INSERT INTO transactions AS t (correlation_id, process, current_stage, stage_index, status,
    started_at, completed_at, last_event_at, customer_id, order_id, invoice_id, payment_id,
    amount, currency, legal_entity, contract_version, updated_at)
SELECT n.correlation_id, a.*
FROM (SELECT DISTINCT correlation_id FROM _new_obs) n
CROSS JOIN LATERAL (
    SELECT (array_agg(s.process))[1],
           (array_agg(s.stage ORDER BY s.stage_index DESC NULLS LAST, s.reached_at DESC,
                      s.stage) FILTER (WHERE s.status = 'ok'))[1],
           max(s.stage_index) FILTER (WHERE s.status = 'ok'),
           CASE WHEN bool_or(s.is_last AND s.status = 'ok') THEN 'completed'
                ELSE 'in_progress' END,
           coalesce(min(s.reached_at) FILTER (WHERE s.stage_index = 0 AND s.status = 'ok'),
                    min(s.reached_at)),
           min(s.reached_at) FILTER (WHERE s.is_last AND s.status = 'ok'),
           max(s.reached_at),
           {_first_business("customer_id")}, {_first_business("order_id")},
           {_first_business("invoice_id")}, {_first_business("payment_id")},
           {_first_business("amount", "::numeric")}, {_first_business("currency")},
           {_first_business("legal_entity")}, {_first_business("contract_version")},
           now()
    FROM (
        SELECT se.process, se.stage, se.status, se.reached_at, se.business,
               c.stage_index, c.is_last
        FROM stage_events se
        LEFT JOIN _catalog c ON c.process = se.process AND c.stage = se.stage
        WHERE se.correlation_id = n.correlation_id
        ORDER BY se.reached_at, se.stage, se.system
    ) s
) a
ORDER BY n.correlation_id
ON CONFLICT (correlation_id) DO UPDATE SET
    process = excluded.process, current_stage = excluded.current_stage,
    stage_index = excluded.stage_index,
    status = CASE WHEN excluded.status = 'completed' THEN 'completed'
                  WHEN t.status = 'stalled' AND excluded.stage_index IS NOT DISTINCT FROM
                       t.stage_index THEN 'stalled'
                  ELSE excluded.status END,
    started_at = excluded.started_at, completed_at = excluded.completed_at,
    last_event_at = excluded.last_event_at, customer_id = excluded.customer_id,
    order_id = excluded.order_id, invoice_id = excluded.invoice_id,
    payment_id = excluded.payment_id, amount = excluded.amount, currency = excluded.currency,
    legal_entity = excluded.legal_entity, contract_version = excluded.contract_version,
    updated_at = now()
"""

_OPEN = "('open', 'assigned', 'in_progress', 'replayed')"

# Failures are grouped by (transaction, stage, fingerprint) into episodes that a success of
# the stage ends. A failure is placed by time, not by arrival: one that happened before the
# stage's latest success belongs to an episode that success has already ended, never to the
# open one, so deliveries in reverse order end as in order (see RECORD_EARLIER_FAILURES).
_STAGE_SUCCESS = """
CROSS JOIN LATERAL (
    SELECT max(se.last_ok_at) AS last_ok_at FROM stage_events se
    WHERE se.correlation_id = o.correlation_id AND se.stage = o.stage
) s"""
_FAILURE_GROUPS = f"""
SELECT o.correlation_id, o.process, o.stage, o.system,
       CASE WHEN bool_or(o.dead_letter) THEN 'dead_letter' ELSE 'error' END AS kind,
       o.fingerprint,
       (array_agg(o.error_type ORDER BY o.at_ns, o.message))[1] AS error_type,
       (array_agg(o.message ORDER BY o.at_ns, o.message))[1] AS message,
       {_ts("min(o.at_ns)")} AS first_seen, {_ts("max(o.at_ns)")} AS last_seen,
       count(*) AS occurrences"""


def _merge_occurrences(into: str, new: str) -> str:
    """SET clause adding the failures `new` to the exception `into`; the earliest keeps its
    error type and message."""
    return f"""
    occurrences = {into}.occurrences + {new}.occurrences,
    kind = CASE WHEN {new}.kind = 'dead_letter' THEN 'dead_letter' ELSE {into}.kind END,
    error_type = CASE WHEN {new}.first_seen < {into}.first_seen
                      THEN {new}.error_type ELSE {into}.error_type END,
    message = CASE WHEN {new}.first_seen < {into}.first_seen
                   THEN {new}.message ELSE {into}.message END,
    first_seen = least({into}.first_seen, {new}.first_seen),
    last_seen = greatest({into}.last_seen, {new}.last_seen),
    updated_at = now()"""


def _resolution(stage: str, succeeded_at: str) -> str:
    """The auto-resolution text: which success of the stage resolved the exception."""
    return (
        f"format('stage %s succeeded at %s', {stage}, "
        f"to_char({succeeded_at} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
    )


def _audit_auto_resolved(source: str, before: str) -> str:
    """The audit-trail rows for the exceptions in `source` (correlation_id, id, resolution)
    that the system auto-resolved from status `before`."""
    return f"""INSERT INTO exception_events (correlation_id, exception_id, actor, action, before,
                              after, comment)
SELECT correlation_id, id, 'system', 'auto_resolved', jsonb_build_object('status', {before}),
       jsonb_build_object('status', 'auto_resolved'), resolution
FROM {source}
ORDER BY correlation_id, id"""


UPSERT_EXCEPTIONS = f"""
INSERT INTO exceptions AS e (correlation_id, process, stage, system, kind, fingerprint,
                             error_type, message, first_seen, last_seen, occurrences)
{_FAILURE_GROUPS}
FROM _new_obs o{_STAGE_SUCCESS}
WHERE NOT o.ok AND NOT coalesce({_ts("o.at_ns")} < s.last_ok_at, false)
GROUP BY o.correlation_id, o.stage, o.fingerprint, o.process, o.system
ORDER BY o.correlation_id, o.stage, o.fingerprint
ON CONFLICT (correlation_id, stage, fingerprint)
    WHERE status NOT IN ('resolved', 'auto_resolved', 'ignored')
DO UPDATE SET{_merge_occurrences("e", "excluded")}
"""

# Failures older than the stage's latest success join the latest exception that success
# auto-resolved, or start one already auto-resolved (with its audit event, as if it had been
# open until the success arrived).
RECORD_EARLIER_FAILURES = f"""
WITH earlier AS (
    {_FAILURE_GROUPS.strip()}, s.last_ok_at
    FROM _new_obs o{_STAGE_SUCCESS}
    WHERE NOT o.ok AND {_ts("o.at_ns")} < s.last_ok_at
    GROUP BY o.correlation_id, o.stage, o.fingerprint, o.process, o.system, s.last_ok_at
), placed AS (
    SELECT f.*, (SELECT x.id
                 FROM (SELECT * FROM exceptions x  -- by key: the transaction's exceptions
                       WHERE x.correlation_id = f.correlation_id OFFSET 0) x
                 WHERE x.stage = f.stage AND x.fingerprint = f.fingerprint
                   AND x.status = 'auto_resolved' AND x.last_seen < f.last_ok_at
                 ORDER BY x.id DESC LIMIT 1) AS id
    FROM earlier f
), merged AS (
    UPDATE exceptions e SET{_merge_occurrences("e", "p")}
    FROM placed p
    WHERE e.correlation_id = p.correlation_id AND e.id = p.id
      -- the same keys as arrays, so that the planner reaches them through the primary key
      AND e.correlation_id = ANY (ARRAY(SELECT correlation_id FROM placed WHERE id IS NOT NULL))
      AND e.id = ANY (ARRAY(SELECT id FROM placed WHERE id IS NOT NULL))
), created AS (
    INSERT INTO exceptions (correlation_id, process, stage, system, kind, fingerprint,
                            error_type, message, first_seen, last_seen, occurrences,
                            status, resolved_at, resolution)
    SELECT correlation_id, process, stage, system, kind, fingerprint, error_type, message,
           first_seen, last_seen, occurrences, 'auto_resolved', clock_timestamp(),
           {_resolution("stage", "last_ok_at")}
    FROM placed
    WHERE id IS NULL
    ORDER BY correlation_id, stage, fingerprint
    RETURNING correlation_id, id, resolution
)
{_audit_auto_resolved("created", "'open'")}
"""

# Rows of the batch's transactions are always found through primary keys: OFFSET 0 keeps a
# LATERAL subquery from being turned into a join, which the planner may answer by scanning
# the whole table (it prices a scan of a small table below index lookups), so ingest cost
# follows the batch, not the table.
SYNC_EXCEPTION_CONTEXT = """
UPDATE exceptions e
SET customer_id = t.customer_id, order_id = t.order_id, invoice_id = t.invoice_id,
    amount = t.amount, currency = t.currency, legal_entity = t.legal_entity,
    process = coalesce(e.process, t.process)
FROM (SELECT DISTINCT correlation_id FROM _new_obs) n
CROSS JOIN LATERAL (
    SELECT x.* FROM exceptions x WHERE x.correlation_id = n.correlation_id OFFSET 0
) x
CROSS JOIN LATERAL (
    SELECT t.* FROM transactions t WHERE t.correlation_id = x.correlation_id OFFSET 0
) t
WHERE e.correlation_id = x.correlation_id AND e.id = x.id
  AND (x.customer_id, x.order_id, x.invoice_id, x.amount, x.currency, x.legal_entity)
      IS DISTINCT FROM
      (t.customer_id, t.order_id, t.invoice_id, t.amount, t.currency, t.legal_entity)
"""

# A success of the stage later than a failure's last occurrence resolves it, whichever of
# the two arrived first; any success of the stage a transaction stalled before resolves the
# stall. Each resolution is written to the audit trail with the status it replaced.
AUTO_RESOLVE = f"""
WITH due AS (
    SELECT x.correlation_id, x.id, x.status AS before_status, s.last_ok_at
    FROM (SELECT DISTINCT correlation_id, stage FROM _new_obs) n
    CROSS JOIN LATERAL (
        SELECT x.* FROM exceptions x
        WHERE x.correlation_id = n.correlation_id AND x.stage = n.stage AND x.status IN {_OPEN}
        OFFSET 0
    ) x
    CROSS JOIN LATERAL (
        SELECT max(last_ok_at) AS last_ok_at FROM stage_events se
        WHERE se.correlation_id = x.correlation_id AND se.stage = x.stage
    ) s
    WHERE (x.kind IN ('error', 'dead_letter') AND x.last_seen < s.last_ok_at)
       OR (x.kind = 'stalled' AND s.last_ok_at IS NOT NULL)
), resolved AS (
    UPDATE exceptions e
    SET status = 'auto_resolved', resolved_at = clock_timestamp(), updated_at = now(),
        resolution = {_resolution("e.stage", "d.last_ok_at")}
    FROM due d
    WHERE e.correlation_id = d.correlation_id AND e.id = d.id
    RETURNING e.correlation_id, e.id, d.before_status, e.resolution
)
{_audit_auto_resolved("resolved", "before_status")}
"""

INSERT_DEAD_LETTERS = f"""
INSERT INTO dead_letters (correlation_id, dedup_key, idempotency_key, process, stage, system,
                          occurred_at, target_url, method, headers, content_type, payload,
                          error_type, error_message, exception_id)
SELECT DISTINCT ON (d.correlation_id, d.record_key)
       d.correlation_id, d.record_key, 'q2c-dl-' || encode(d.record_key, 'hex'), d.process,
       d.stage, d.system, {_ts("d.at_ns")}, d.target_url, d.method, d.headers, d.content_type,
       d.payload, d.error_type, d.error_message,
       (SELECT e.id FROM exceptions e
        WHERE e.correlation_id = d.correlation_id AND e.stage = d.stage
          AND e.fingerprint = d.fingerprint
        ORDER BY ({_ts("d.at_ns")} BETWEEN e.first_seen AND e.last_seen) DESC, e.id DESC
        LIMIT 1)
FROM _in_dead d
ORDER BY d.correlation_id, d.record_key
ON CONFLICT (correlation_id, dedup_key) DO NOTHING
"""

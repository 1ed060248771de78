"""SQL of the telemetry writer: staging tables, and the set-wise merge of staged rows into
the canonical model. Every statement is idempotent: staged rows already stored change nothing.
"""

from collectors.batch import LOGS, SPANS, STAGINGS
from q2c.audit_sql import audit_auto_resolved
from q2c.catalog import CATALOG_TABLE
from q2c.vocabulary import sql_reopened_status

# The writer's session: JIT compilation off. Its statements touch a batch's rows by key and
# run in milliseconds; when the planner's estimates cross jit_above_cost (as they may once
# tables grow or statistics change) compiling them takes hundreds of milliseconds, every
# group, for nothing.
SESSION = "SET jit = off"


# Staging tables live per connection, as collectors.batch declares them. Only _new_obs,
# used by every transaction, empties itself at commit: PostgreSQL truncates every such
# table at every commit that touched a temporary table, so the others, used on rarer
# paths, are emptied by the writer right before it fills them.
STAGING = (
    ";\n".join(staging.ddl for staging in STAGINGS)
    + """;
CREATE TEMP TABLE IF NOT EXISTS _new_records (record_key bytea);
CREATE TEMP TABLE IF NOT EXISTS _new_obs (LIKE _in_obs) ON COMMIT DELETE ROWS;
"""
    + CATALOG_TABLE
    + ";"
)


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
    "spans", SPANS.table, SPANS.columns, "trace_id || span_id"
)
INSERT_LOGS, INSERT_LOGS_NOTING_NEW = _merge_staged(
    "log_records", LOGS.table, LOGS.columns, "record_hash"
)

SELECT_NEW_OBSERVATIONS = """
INSERT INTO _new_obs
SELECT DISTINCT ON (o.record_key) o.*
FROM _in_obs o
WHERE o.record_key IN (SELECT record_key FROM _new_records)
ORDER BY o.record_key
"""

# Success times of a stage row: distinct, ascending, the latest MAX_OK_TIMES (a stage that
# succeeds over and over for one transaction keeps its recent history).
MAX_OK_TIMES = 100


def _times(array: str) -> str:
    """`array` of timestamps in the canonical form of stage_events.ok_times."""
    return (
        f"ARRAY(SELECT t FROM (SELECT DISTINCT t FROM unnest({array}) AS t "
        f"ORDER BY t DESC LIMIT {MAX_OK_TIMES}) AS latest ORDER BY t)"
    )


# A stage row keeps its best observation: a success before any failure, then the earliest,
# ties broken by content, so the outcome does not depend on the order deliveries arrive in.
_BETTER = (
    "((excluded.status = 'ok' AND se.status = 'error') OR (excluded.status = se.status AND "
    "(excluded.reached_at, excluded.business) < (se.reached_at, se.business)))"
)
UPSERT_STAGE_EVENTS = f"""
INSERT INTO stage_events AS se (correlation_id, stage, system, process, reached_at, status,
                                business, trace_id, span_id, last_ok_at, ok_times)
SELECT DISTINCT ON (correlation_id, stage, system)
       correlation_id, stage, system, process, {_ts("at_ns")},
       CASE WHEN ok THEN 'ok' ELSE 'error' END, business, trace_id, span_id, last_ok_at,
       CASE WHEN cardinality(ok_times) < 2 THEN ok_times ELSE {_times("ok_times")} END
FROM (
    SELECT *, max({_ts("at_ns")}) FILTER (WHERE ok) OVER w AS last_ok_at,
           coalesce(array_agg({_ts("at_ns")}) FILTER (WHERE ok) OVER w, '{{}}') AS ok_times
    FROM _new_obs
    WINDOW w AS (PARTITION BY correlation_id, stage, system)
) o
ORDER BY correlation_id, stage, system, ok DESC, at_ns, business
ON CONFLICT (correlation_id, stage, system) DO UPDATE SET
    process = CASE WHEN {_BETTER} THEN excluded.process ELSE se.process END,
    reached_at = CASE WHEN {_BETTER} THEN excluded.reached_at ELSE se.reached_at END,
    business = CASE WHEN {_BETTER} THEN excluded.business ELSE se.business END,
    trace_id = CASE WHEN {_BETTER} THEN excluded.trace_id ELSE se.trace_id END,
    span_id = CASE WHEN {_BETTER} THEN excluded.span_id ELSE se.span_id END,
    ingested_at = CASE WHEN {_BETTER} THEN clock_timestamp() ELSE se.ingested_at END,
    status = CASE WHEN {_BETTER} THEN excluded.status ELSE se.status END,
    last_ok_at = greatest(se.last_ok_at, excluded.last_ok_at),
    ok_times = CASE WHEN excluded.ok_times <@ se.ok_times THEN se.ok_times
                    ELSE {_times("se.ok_times || excluded.ok_times")} END
"""


# Rows of the batch's transactions are always found through primary keys: OFFSET 0 keeps a
# LATERAL subquery from being turned into a join, which the planner may answer by scanning
# the whole table (it prices a scan of a small table below index lookups), so ingest cost
# follows the batch, not the table.
def _by_key(table: str, alias: str, condition: str) -> str:
    """`table`'s rows meeting `condition`, as a LATERAL subquery fetched by key."""
    return f"LATERAL (SELECT {alias}.* FROM {table} {alias} WHERE {condition} OFFSET 0) {alias}"


def _first_business(key: str, cast: str = "") -> str:
    return f"((array_agg(s.business->>'{key}') FILTER (WHERE s.business ? '{key}'))[1]){cast}"


# Transactions are recomputed from all their stage rows, so they are a pure function of them.
# Each of the batch's transactions has its stage rows fetched through the stage_events
# primary key (`_by_key`; the outer OFFSET 0 keeps the catalog join out of that loop). All
# the rows are then sorted once, by transaction, then (reached_at, stage, system);
# PostgreSQL aggregates each group in input order, so that one sort serves every "first
# value reported" below. (An aggregate per transaction, each sorting its own rows, cost
# 12-17 % more; `= ANY (ARRAY(…))` instead of the loop is as fast but lets the planner scan
# a small table and test each row against every key.)
UPSERT_TRANSACTIONS = f"""
INSERT INTO transactions AS t (correlation_id, process, current_stage, stage_index, status,
    started_at, completed_at, last_event_at, customer_id, order_id, invoice_id, payment_id,
    amount, currency, legal_entity, contract_version, updated_at)
SELECT s.correlation_id,
       (array_agg(s.process))[1],
       (array_agg(s.stage ORDER BY s.stage_index DESC NULLS LAST, s.reached_at DESC, s.stage)
        FILTER (WHERE s.status = 'ok'))[1],
       max(s.stage_index) FILTER (WHERE s.status = 'ok'),
       CASE WHEN bool_or(s.is_last AND s.status = 'ok') THEN 'completed' ELSE 'in_progress' END,
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
    SELECT se.correlation_id, se.process, se.stage, se.status, se.reached_at, se.business,
           c.stage_index, c.is_last
    FROM (
        SELECT se.*
        FROM (SELECT DISTINCT correlation_id FROM _new_obs) n
        CROSS JOIN {_by_key("stage_events", "se", "se.correlation_id = n.correlation_id")}
        OFFSET 0
    ) se
    LEFT JOIN _catalog c ON c.process = se.process AND c.stage = se.stage
    ORDER BY se.correlation_id, se.reached_at, se.stage, se.system
) s
GROUP BY s.correlation_id
ORDER BY s.correlation_id
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
-- The row as this statement's snapshot saw it (its xmin), or another writer committed it
-- while this one waited for its lock: then the stage rows read above lack that writer's,
-- and the whole transaction is retried on a fresh snapshot (0005_stale_transaction_guard).
WHERE t.xmin = (SELECT seen.xmin FROM transactions seen
                WHERE seen.correlation_id = excluded.correlation_id)
   OR q2c_retry_statement('transaction ' || t.correlation_id || ' changed concurrently')
"""

_SEALED = "('resolved', 'ignored')"  # closed by a person: later telemetry leaves them be


def _resolution(stage: str, succeeded_at: str) -> str:
    """The auto-resolution text: which success of the stage resolved the exception, its
    time as people read it (`2026-12-04 18:40:22 UTC`)."""
    return (
        f"format('stage %s succeeded at %s', {stage}, "
        f"to_char({succeeded_at} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"'))"
    )


# Failures of one stage of one transaction with one fingerprint form episodes: a failure
# belongs to the episode that the stage's first success after it ends (on any system), or
# to the open episode if none has followed yet; each episode is one exception. Every
# failure is kept in exception_occurrences and every success time in stage_events.ok_times,
# so the episodes of each (transaction, stage) a batch touches are recomputed from what
# happened, not from the order it arrived in: a late success splits an exception or
# resolves it, a late failure joins the episode it belongs to. Exceptions a person closed
# are left as they are (a failure of theirs that arrives late starts its own).
#
# The work follows the batch, not the history: an exception enters as one unit (its
# count, span and earliest error, ending where its first failure's episode ends) unless a
# success now falls within its span, and only then are its failures read one by one to
# take it apart.
#
# Which exception an episode is: the open episode is the open exception, if there is one;
# any other episode is the exception whose failures lie in it (the latest episode holding
# its failures, were they ever spread over several). An episode that is neither gets a new
# row: open, or auto-resolved with the audit event it would have had. The batch's rows in
# `transactions`, locked by UPSERT_TRANSACTIONS until commit, keep two writers from
# recomputing one transaction's episodes at the same time.
#
# An exception a person ignored until its failure recurs is not left as it is: it takes its
# episode's new failures like an open one, and the first that is later than any it had
# reopens it (the audit trail says so). Once its stage has succeeded, its episode is over
# and a later failure is a new exception, as after any close.
#
# The same statement ends stalls: a transaction's stall before a stage is auto-resolved by
# any success of that stage. Every auto-resolution goes to the audit trail with the status
# it replaced.
# One failure is one occurrence, however many records report it: its span and its log
# record (one of which may lack the span ID), or two log records. Records are the same
# failure when they name the same transaction, stage, fingerprint and moment and not two
# different span IDs. Of a batch's records of one failure, the one with the span ID is
# kept; a record of a failure already stored adds nothing, but gives the stored occurrence
# the span's trace if it had none (ENRICH_OCCURRENCES).
_SAME_FAILURE = """{stored}.correlation_id = {new}.correlation_id AND {stored}.stage = {new}.stage
    AND {stored}.fingerprint = {new}.fingerprint AND {stored}.occurred_at = {new}.at
    AND {stored}.record_key <> {new}.record_key
    AND ({stored}.span_id IS NULL OR {new}.span_id IS NULL OR {stored}.span_id = {new}.span_id)"""


def _next_success(correlation_id: str, stage: str, after: str) -> str:
    """The stage's first success (on any system) after `after`."""
    return f"""(SELECT min(t) FROM stage_events se CROSS JOIN LATERAL unnest(se.ok_times) t
            WHERE se.correlation_id = {correlation_id} AND se.stage = {stage} AND t > {after})"""


_PAIR_EXCEPTIONS = _by_key(
    "exceptions", "x", "x.correlation_id = p.correlation_id AND x.stage = p.stage"
)
_EXCEPTION_FAILURES = _by_key(
    "exception_occurrences", "o", "o.correlation_id = x.correlation_id AND o.exception_id = x.id"
)

DERIVE_EXCEPTIONS = f"""
WITH pair_exception AS (  -- the exceptions of the batch's (transaction, stage) pairs
    SELECT x.*
    FROM (SELECT DISTINCT correlation_id, stage FROM _new_obs) p
    CROSS JOIN {_PAIR_EXCEPTIONS}
    WHERE x.status NOT IN {_SEALED} OR x.ignored_until_recurs
), stall_ended AS (  -- a success of the stage a transaction stalled before ends the stall
    UPDATE exceptions e
    SET status = 'auto_resolved', resolved_at = clock_timestamp(), updated_at = now(),
        resolution = {_resolution("e.stage", "s.last_ok_at")}
    FROM (SELECT x.correlation_id, x.id, x.status,
                 (SELECT max(se.last_ok_at) FROM stage_events se
                  WHERE se.correlation_id = x.correlation_id AND se.stage = x.stage) AS last_ok_at
          FROM pair_exception x WHERE x.kind = 'stalled' AND q2c_is_open(x.status)) s
    WHERE s.last_ok_at IS NOT NULL AND e.correlation_id = s.correlation_id AND e.id = s.id
    RETURNING e.correlation_id, e.id, s.status AS before_status, e.resolution
), stored AS (  -- the failures' exceptions that late telemetry may change
    SELECT x.*, {_next_success("x.correlation_id", "x.stage", "x.first_seen")} AS next_ok
    FROM pair_exception x
    WHERE x.kind IN ('error', 'dead_letter')
), placed AS (  -- whole exceptions, the failures of those a success now falls within, and
                -- the new failures, each with the end of its episode (infinity: still open)
    SELECT correlation_id, stage, fingerprint, id AS exception_id, NULL::bytea AS record_key,
           first_seen, last_seen, occurrences, kind, error_type, message, process, system,
           NULL::bytea AS trace_id, NULL::bytea AS span_id,
           coalesce(next_ok, 'infinity') AS ends_at
    FROM stored WHERE NOT coalesce(next_ok <= last_seen, false)
    UNION ALL
    SELECT o.correlation_id, o.stage, o.fingerprint, o.exception_id, o.record_key,
           o.occurred_at, o.occurred_at, o.occurrences, o.kind, o.error_type, o.message,
           o.process, o.system, o.trace_id, o.span_id,
           coalesce({_next_success("o.correlation_id", "o.stage", "o.occurred_at")}, 'infinity')
    FROM stored x
    CROSS JOIN {_EXCEPTION_FAILURES}
    WHERE x.next_ok <= x.last_seen
    UNION ALL
    SELECT correlation_id, stage, fingerprint, NULL, record_key, at, at, 1, kind, error_type,
           message, process, system, trace_id, span_id,
           coalesce({_next_success("f.correlation_id", "f.stage", "f.at")}, 'infinity')
    FROM (
        SELECT correlation_id, stage, fingerprint, record_key, at,
               CASE WHEN dead THEN 'dead_letter' ELSE kind END AS kind, error_type, message,
               process, system, trace_id, span_id
        FROM (  -- one record per failure of the batch (_SAME_FAILURE)
            SELECT *,
                   row_number() OVER (PARTITION BY correlation_id, stage, fingerprint, at,
                                                   span_id ORDER BY record_key) AS nth_of_span,
                   count(span_id) OVER failure AS spans,
                   bool_or(kind = 'dead_letter') OVER failure AS dead
            FROM (  -- a span sent again with other times is a new span, not a new failure
                SELECT DISTINCT ON (correlation_id, record_key)
                       correlation_id, stage, fingerprint, record_key, {_ts("at_ns")} AS at,
                       CASE WHEN dead_letter THEN 'dead_letter' ELSE 'error' END AS kind,
                       error_type, message, process, system, trace_id, span_id
                FROM _new_obs o
                WHERE NOT ok AND (  -- a subquery, not NOT EXISTS: one key probe per failure
                    SELECT true FROM exception_occurrences x
                    WHERE x.correlation_id = o.correlation_id
                      AND x.record_key = o.record_key) IS NULL
                ORDER BY correlation_id, record_key, at_ns
            ) records
            WINDOW failure AS (PARTITION BY correlation_id, stage, fingerprint, at)
        ) ranked
        WHERE nth_of_span = 1 AND (span_id IS NOT NULL OR spans = 0)
          AND (SELECT true FROM exception_occurrences x  -- nor one already stored
               WHERE {_SAME_FAILURE.format(stored="x", new="ranked")} LIMIT 1) IS NULL
    ) f
), episode AS (
    SELECT correlation_id, stage, fingerprint, ends_at,
           sum(occurrences)::integer AS occurrences, min(first_seen) AS first_seen,
           max(last_seen) AS last_seen,
           CASE WHEN bool_or(kind = 'dead_letter') THEN 'dead_letter' ELSE 'error' END AS kind,
           (array_agg(error_type ORDER BY first_seen, message, record_key))[1] AS error_type,
           (array_agg(message ORDER BY first_seen, message, record_key))[1] AS message,
           (array_agg(process ORDER BY first_seen, message, record_key))[1] AS process,
           (array_agg(system ORDER BY first_seen, message, record_key))[1] AS system
    FROM placed
    GROUP BY correlation_id, stage, fingerprint, ends_at
), claim AS (  -- each exception's episode
    SELECT DISTINCT ON (exception_id) exception_id, correlation_id, stage, fingerprint, ends_at
    FROM (SELECT exception_id, correlation_id, stage, fingerprint, ends_at FROM placed
          WHERE exception_id IS NOT NULL
          UNION ALL  -- the open exception is the open episode's
          SELECT x.id, x.correlation_id, x.stage, x.fingerprint, ep.ends_at
          FROM stored x
          JOIN episode ep USING (correlation_id, stage, fingerprint)
          WHERE q2c_is_open(x.status) AND ep.ends_at = 'infinity') c
    ORDER BY exception_id, ends_at DESC
), named AS MATERIALIZED (  -- each episode with its exception's id, new ones numbered here
    SELECT ep.*, c.id IS NULL AS new,
           coalesce(c.id, nextval(pg_get_serial_sequence('exceptions', 'id'))) AS id
    FROM episode ep
    LEFT JOIN (SELECT correlation_id, stage, fingerprint, ends_at, min(exception_id) AS id
               FROM claim GROUP BY correlation_id, stage, fingerprint, ends_at) c
           USING (correlation_id, stage, fingerprint, ends_at)
), known AS (  -- the named episodes' existing exceptions as they were
    SELECT n.*, x.status AS before_status,
           x.ignored_until_recurs AND NOT isfinite(n.ends_at) AND n.last_seen > x.last_seen
           AND NOT EXISTS (SELECT 1 FROM pair_exception o  -- only one may be open
                           WHERE o.correlation_id = x.correlation_id AND o.stage = x.stage
                             AND o.fingerprint = x.fingerprint AND q2c_is_open(o.status))
               AS recurs
    FROM named n
    JOIN stored x ON x.correlation_id = n.correlation_id AND x.id = n.id
), updated AS (
    UPDATE exceptions e
    SET occurrences = n.occurrences, first_seen = n.first_seen, last_seen = n.last_seen,
        kind = n.kind, error_type = n.error_type, message = n.message, process = n.process,
        system = n.system,
        status = CASE WHEN isfinite(n.ends_at) AND q2c_is_open(e.status)
                      THEN 'auto_resolved' WHEN n.recurs THEN {sql_reopened_status("e.owner")}
                      ELSE e.status END,
        resolved_at = CASE WHEN isfinite(n.ends_at) AND q2c_is_open(e.status)
                           THEN clock_timestamp() WHEN n.recurs THEN NULL
                           ELSE e.resolved_at END,
        resolution = CASE WHEN isfinite(n.ends_at) AND e.status NOT IN {_SEALED}
                          THEN {_resolution("e.stage", "n.ends_at")}
                          WHEN n.recurs THEN NULL ELSE e.resolution END,
        ignored_until_recurs = e.ignored_until_recurs AND NOT n.recurs,
        updated_at = now()
    FROM known n
    WHERE e.correlation_id = n.correlation_id AND e.id = n.id
      -- the same keys as arrays, so that the planner reaches them through the primary key
      AND e.correlation_id = ANY (ARRAY(SELECT correlation_id FROM known))
      AND e.id = ANY (ARRAY(SELECT id FROM known))
      AND ((e.occurrences, e.first_seen, e.last_seen, e.kind, e.error_type, e.message,
            e.process, e.system)
           IS DISTINCT FROM (n.occurrences, n.first_seen, n.last_seen, n.kind, n.error_type,
                             n.message, n.process, n.system)
           OR (isfinite(n.ends_at) AND e.status NOT IN {_SEALED}
               AND e.resolution IS DISTINCT FROM {_resolution("e.stage", "n.ends_at")}))
    RETURNING e.correlation_id, e.id, n.before_status, e.status, e.resolution, n.recurs,
              e.last_seen
), recurred AS (  -- ignored until the failure recurs: it has
    INSERT INTO exception_events (correlation_id, exception_id, actor, action, before, after,
                                  comment)
    SELECT correlation_id, id, 'system', 'reopened',
           jsonb_build_object('status', before_status, 'ignored_until_recurs', true),
           jsonb_build_object('status', status, 'ignored_until_recurs', false),
           format('failed again at %s: it was ignored until its failure recurs',
                  to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
    FROM updated WHERE recurs ORDER BY correlation_id, id
), created AS (  -- with the business context of the transaction as just upserted, so that
                 -- SYNC_EXCEPTION_CONTEXT need not rewrite every new exception's row
    INSERT INTO exceptions (id, correlation_id, process, stage, system, kind, fingerprint,
                            error_type, message, first_seen, last_seen, occurrences, status,
                            resolved_at, resolution, customer_id, order_id, invoice_id,
                            amount, currency, legal_entity)
    OVERRIDING SYSTEM VALUE
    SELECT n.id, n.correlation_id, coalesce(n.process, t.process), n.stage, n.system, n.kind,
           n.fingerprint, n.error_type, n.message, n.first_seen, n.last_seen, n.occurrences,
           CASE WHEN isfinite(n.ends_at) THEN 'auto_resolved' ELSE 'open' END,
           CASE WHEN isfinite(n.ends_at) THEN clock_timestamp() END,
           CASE WHEN isfinite(n.ends_at) THEN {_resolution("n.stage", "n.ends_at")} END,
           t.customer_id, t.order_id, t.invoice_id, t.amount, t.currency, t.legal_entity
    FROM named n
    LEFT JOIN {_by_key("transactions", "t", "t.correlation_id = n.correlation_id")} ON true
    WHERE n.new
    ORDER BY n.correlation_id, n.stage, n.fingerprint, n.first_seen
    RETURNING correlation_id, id, status, resolution
), assigned AS (  -- every unit with its episode's exception
    SELECT p.*, n.id AS final_id
    FROM placed p
    JOIN named n USING (correlation_id, stage, fingerprint, ends_at)
), kept AS (
    INSERT INTO exception_occurrences (correlation_id, record_key, exception_id, stage,
        fingerprint, process, system, kind, occurred_at, error_type, message, trace_id, span_id)
    SELECT correlation_id, record_key, final_id, stage, fingerprint, process, system, kind,
           first_seen, error_type, message, trace_id, span_id
    FROM assigned
    WHERE exception_id IS NULL
    ORDER BY correlation_id, record_key
), moved AS (  -- failures whose episode is now another exception's (a unit's all at once)
    UPDATE exception_occurrences o SET exception_id = a.final_id
    FROM assigned a
    WHERE a.exception_id <> a.final_id
      AND o.correlation_id = a.correlation_id AND o.exception_id = a.exception_id
      AND (a.record_key IS NULL OR o.record_key = a.record_key)
    RETURNING o.correlation_id, o.record_key, o.exception_id, a.exception_id AS old_exception_id,
              o.stage, o.occurred_at
), relinked AS (  -- a dead letter belongs to its failure's exception, also when another
                  -- record of the failure is the one kept (_SAME_FAILURE)
    UPDATE dead_letters d SET exception_id = m.exception_id
    FROM moved m
    WHERE d.correlation_id = m.correlation_id
      AND (d.dedup_key = m.record_key
           OR (d.exception_id = m.old_exception_id AND d.stage = m.stage
               AND d.occurred_at = m.occurred_at))
), resolved AS (
    SELECT correlation_id, id, before_status, resolution FROM updated
    WHERE status = 'auto_resolved' AND q2c_is_open(before_status)
    UNION ALL
    SELECT correlation_id, id, 'open', resolution FROM created WHERE status = 'auto_resolved'
    UNION ALL
    SELECT correlation_id, id, before_status, resolution FROM stall_ended
)
{audit_auto_resolved("resolved", "before_status")}
"""

# A stored failure learns what its other records say when they arrive later (see
# _SAME_FAILURE): its span's trace, if it was stored from a record without one (a log
# record), and that it was dead-lettered, if a later record says so (then its exception
# is a dead letter's too).
ENRICH_OCCURRENCES = f"""
WITH reported AS (  -- the batch's failures, one row per (transaction, stage, fingerprint,
                    -- moment), with a span's IDs if any record had them
    SELECT correlation_id, stage, fingerprint, {_ts("at_ns")} AS at,
           (array_agg(record_key ORDER BY record_key))[1] AS record_key,
           bool_or(dead_letter) AS dead_letter,
           (array_agg(trace_id ORDER BY record_key) FILTER (WHERE span_id IS NOT NULL))[1]
               AS trace_id,
           (array_agg(span_id ORDER BY record_key) FILTER (WHERE span_id IS NOT NULL))[1]
               AS span_id
    FROM _new_obs
    WHERE NOT ok
    GROUP BY correlation_id, stage, fingerprint, at_ns
), target AS (  -- the stored occurrences of those failures that lack what they report
    SELECT y.row_at, y.correlation_id, y.record_key, r.trace_id, r.span_id, r.dead_letter
    FROM reported r
    CROSS JOIN LATERAL (  -- by key, as _by_key does, with where the row is
        SELECT y.ctid AS row_at, y.* FROM exception_occurrences y
        WHERE {_SAME_FAILURE.format(stored="y", new="r")} OFFSET 0) y
    WHERE (y.span_id IS NULL AND r.span_id IS NOT NULL)
       OR (r.dead_letter AND y.kind <> 'dead_letter')
), enriched AS (
    UPDATE exception_occurrences x
    SET trace_id = coalesce(x.trace_id, t.trace_id), span_id = coalesce(x.span_id, t.span_id),
        kind = CASE WHEN t.dead_letter THEN 'dead_letter' ELSE x.kind END
    FROM target t
    -- by the row found just above (a row updated meanwhile is left as it is), so that the
    -- planner never considers reading the whole table
    WHERE x.ctid = t.row_at AND x.correlation_id = t.correlation_id
      AND x.record_key = t.record_key
    RETURNING x.correlation_id, x.exception_id, x.kind
)
UPDATE exceptions e SET kind = 'dead_letter', updated_at = now()
FROM (SELECT DISTINCT correlation_id, exception_id FROM enriched
      WHERE kind = 'dead_letter') n
WHERE e.correlation_id = n.correlation_id AND e.id = n.exception_id AND e.kind <> 'dead_letter'
"""

SYNC_EXCEPTION_CONTEXT = f"""
UPDATE exceptions e
SET customer_id = t.customer_id, order_id = t.order_id, invoice_id = t.invoice_id,
    amount = t.amount, currency = t.currency, legal_entity = t.legal_entity,
    process = coalesce(e.process, t.process)
FROM (SELECT DISTINCT correlation_id FROM _new_obs) n
CROSS JOIN {_by_key("exceptions", "x", "x.correlation_id = n.correlation_id")}
CROSS JOIN {_by_key("transactions", "t", "t.correlation_id = x.correlation_id")}
WHERE e.correlation_id = x.correlation_id AND e.id = x.id
  AND (x.customer_id, x.order_id, x.invoice_id, x.amount, x.currency, x.legal_entity)
      IS DISTINCT FROM
      (t.customer_id, t.order_id, t.invoice_id, t.amount, t.currency, t.legal_entity)
"""

INSERT_DEAD_LETTERS = f"""
INSERT INTO dead_letters (correlation_id, dedup_key, idempotency_key, process, stage, system,
                          occurred_at, target_url, method, headers, content_type, payload,
                          error_type, error_message, target_error, exception_id)
SELECT DISTINCT ON (d.correlation_id, d.record_key)
       d.correlation_id, d.record_key, 'q2c-dl-' || encode(d.record_key, 'hex'), d.process,
       d.stage, d.system, {_ts("d.at_ns")}, d.target_url, d.method, d.headers, d.content_type,
       d.payload, d.error_type, d.error_message, d.target_error,
       coalesce(  -- its failure's exception: by its record, or as another record of it
           (SELECT x.exception_id FROM exception_occurrences x
            WHERE x.correlation_id = d.correlation_id AND x.record_key = d.record_key),
           (SELECT x.exception_id FROM exception_occurrences x
            WHERE x.correlation_id = d.correlation_id AND x.stage = d.stage
              AND x.fingerprint = d.fingerprint AND x.occurred_at = {_ts("d.at_ns")}
            ORDER BY x.record_key LIMIT 1))
FROM _in_dead d
ORDER BY d.correlation_id, d.record_key
ON CONFLICT (correlation_id, dedup_key) DO NOTHING
"""

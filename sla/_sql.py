"""SQL of one evaluation window: rollups, reconciliation, stalled transactions.

Every statement reads the `_affected` correlation IDs (those whose stage events changed
in the window) or the policy tables loaded for this transaction, and writes exactly once:
rollup pairs are remembered in rollup_progress, exceptions obey the one-open rule.
"""

from q2c.audit_sql import audit_auto_resolved
from q2c.catalog import CATALOG_TABLE
from q2c.vocabulary import ONE_OPEN_INDEX_PREDICATE, RECORDS_STAGE_PREFIX, sql_reopened_status

# Rows stamped before the oldest running writer's start are all committed (ingest times
# are clock_timestamp()); the window ends there, so nothing committed late is skipped.
HORIZON = """
SELECT least(clock_timestamp(),
             coalesce((SELECT min(xact_start) FROM pg_stat_activity
                       WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
                         AND datname = current_database()), clock_timestamp()))
"""

POLICY_TABLES = f"""
{CATALOG_TABLE} ON COMMIT DROP;
CREATE TEMP TABLE _reconcile (process text, field text) ON COMMIT DROP;
CREATE TEMP TABLE _affected (correlation_id text PRIMARY KEY) ON COMMIT DROP;
CREATE TEMP TABLE _fresh (correlation_id text, process text, from_stage text, to_stage text,
                          completed_at timestamptz, latency_ms double precision) ON COMMIT DROP;
"""

AFFECTED = """
INSERT INTO _affected
SELECT DISTINCT correlation_id FROM stage_events
WHERE ingested_at >= %(lower)s AND ingested_at < %(upper)s
"""

# Every pair of stages a transaction reached (earliest success per stage, across systems),
# plus a "reached" marker per stage (from_stage = ''), minus what was counted before.
FRESH_PAIRS = """
WITH reached AS (
    SELECT se.correlation_id, se.process, se.stage, min(se.reached_at) AS reached_at
    FROM stage_events se JOIN _affected USING (correlation_id)
    WHERE se.status = 'ok'
    GROUP BY se.correlation_id, se.process, se.stage
), indexed AS (
    SELECT r.*, c.stage_index FROM reached r JOIN _catalog c USING (process, stage)
), pairs AS (
    SELECT a.correlation_id, a.process, a.stage AS from_stage, b.stage AS to_stage,
           b.reached_at AS completed_at,
           greatest(0, extract(epoch FROM b.reached_at - a.reached_at) * 1000) AS latency_ms
    FROM indexed a
    JOIN indexed b ON b.correlation_id = a.correlation_id AND b.process = a.process
                  AND b.stage_index > a.stage_index
    UNION ALL
    SELECT correlation_id, process, '', stage, reached_at, NULL FROM indexed
), fresh AS (
    SELECT p.* FROM pairs p LEFT JOIN rollup_progress rp USING (correlation_id)
    WHERE NOT (p.from_stage || '>' || p.to_stage = ANY (coalesce(rp.counted, '{}')))
), noted AS (
    INSERT INTO rollup_progress (correlation_id, counted)
    SELECT correlation_id, array_agg(from_stage || '>' || to_stage ORDER BY from_stage, to_stage)
    FROM fresh GROUP BY correlation_id
    ORDER BY correlation_id
    ON CONFLICT (correlation_id)
    DO UPDATE SET counted = rollup_progress.counted || excluded.counted
)
INSERT INTO _fresh SELECT * FROM fresh
"""

_BUCKET = "to_timestamp(floor(extract(epoch FROM {ts}) / res.s) * res.s)"

ADD_TO_ROLLUPS = f"""
WITH per_bucket AS (
    SELECT f.process, f.from_stage, f.to_stage, res.s AS bucket_seconds,
           {_BUCKET.format(ts="f.completed_at")} AS bucket_start,
           q2c_latency_bucket(f.latency_ms) AS bucket, count(*) AS n,
           sum(f.latency_ms) AS latency_sum, max(f.latency_ms) AS latency_max
    FROM _fresh f CROSS JOIN (VALUES (300), (86400)) AS res(s)
    GROUP BY 1, 2, 3, 4, 5, 6
)
INSERT INTO rollups AS r (process, from_stage, to_stage, bucket_seconds, bucket_start, count,
                          latency_sum_ms, latency_max_ms, histogram)
SELECT process, from_stage, to_stage, bucket_seconds, bucket_start, sum(n),
       coalesce(sum(latency_sum), 0), coalesce(max(latency_max), 0),
       coalesce(jsonb_object_agg(bucket, n) FILTER (WHERE bucket IS NOT NULL), '{{}}')
FROM per_bucket
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (process, from_stage, to_stage, bucket_seconds, bucket_start) DO UPDATE SET
    count = r.count + excluded.count,
    latency_sum_ms = r.latency_sum_ms + excluded.latency_sum_ms,
    latency_max_ms = greatest(r.latency_max_ms, excluded.latency_max_ms),
    histogram = q2c_histogram_add(r.histogram, excluded.histogram)
"""

# Failures opened in the window count as errors of their stage, once each.
ADD_ERRORS = f"""
INSERT INTO rollups AS r (process, from_stage, to_stage, bucket_seconds, bucket_start,
                          error_count)
SELECT e.process, '', e.stage, res.s, {_BUCKET.format(ts="e.first_seen")}, count(*)
FROM exceptions e CROSS JOIN (VALUES (300), (86400)) AS res(s)
WHERE e.created_at >= %(lower)s AND e.created_at < %(upper)s
  AND e.kind IN ('error', 'dead_letter') AND e.process IS NOT NULL
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (process, from_stage, to_stage, bucket_seconds, bucket_start) DO UPDATE SET
    error_count = r.error_count + excluded.error_count
"""

# Compare what different systems reported for the same transaction.
RECONCILE = f"""
WITH reported AS (
    SELECT se.correlation_id, se.process, f.field, se.system, se.stage, se.reached_at,
           se.business->>f.field AS value
    FROM stage_events se
    JOIN _affected USING (correlation_id)
    JOIN _reconcile f ON f.process = se.process
    WHERE se.business ? f.field
), per_field AS (
    SELECT correlation_id, process, field, max(reached_at) AS observed_at,
           count(DISTINCT system) AS systems,
           CASE WHEN field IN ('amount', 'tax_amount')
                THEN max(value::numeric) FILTER (WHERE field IN ('amount', 'tax_amount'))
                     - min(value::numeric) FILTER (WHERE field IN ('amount', 'tax_amount'))
                     > %(tolerance)s
                ELSE count(DISTINCT value) > 1 END AS mismatch,
           jsonb_object_agg(system, value ORDER BY system) AS by_system,
           (array_agg(stage ORDER BY reached_at DESC))[1] AS latest_stage
    FROM reported
    GROUP BY correlation_id, process, field
), checked AS (
    SELECT correlation_id, process, max(observed_at) AS observed_at,
           NOT bool_or(mismatch) AS matched,
           jsonb_object_agg(field, by_system) AS compared,
           coalesce(jsonb_object_agg(field, by_system) FILTER (WHERE mismatch), '{{}}')
               AS mismatches,
           (array_agg(latest_stage ORDER BY observed_at DESC) FILTER (WHERE mismatch))[1]
               AS stage
    FROM per_field
    WHERE systems >= 2
    GROUP BY correlation_id, process
), previous AS (
    SELECT r.correlation_id, r.process, r.observed_at, r.matched
    FROM reconciliations r JOIN checked c USING (correlation_id)
), deltas AS (
    SELECT process, observed_at, 1 AS checked, CASE WHEN matched THEN 0 ELSE 1 END AS bad
    FROM checked
    UNION ALL
    SELECT process, observed_at, -1, CASE WHEN matched THEN 0 ELSE -1 END FROM previous
), counted AS (
    INSERT INTO kpi_counts AS k (name, process, bucket_seconds, bucket_start, value)
    SELECT name, process, res.s, to_timestamp(floor(extract(epoch FROM observed_at) / res.s)
                                              * res.s), sum(v)
    FROM deltas
    CROSS JOIN LATERAL (VALUES ('reconciliation_checked', checked),
                               ('reconciliation_mismatched', bad)) AS m(name, v)
    CROSS JOIN (VALUES (300), (86400)) AS res(s)
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (name, process, bucket_seconds, bucket_start)
    DO UPDATE SET value = k.value + excluded.value
), saved AS (
    INSERT INTO reconciliations AS r (correlation_id, process, observed_at, matched, compared,
                                      mismatches)
    SELECT correlation_id, process, observed_at, matched, compared, mismatches FROM checked
    ORDER BY correlation_id
    ON CONFLICT (correlation_id) DO UPDATE SET
        process = excluded.process, observed_at = excluded.observed_at, checked_at = now(),
        matched = excluded.matched, compared = excluded.compared,
        mismatches = excluded.mismatches
    RETURNING r.correlation_id
), opened AS (
    INSERT INTO exceptions (correlation_id, process, stage, system, kind, fingerprint,
                            error_type, message, first_seen, last_seen, occurrences,
                            customer_id, order_id, invoice_id, amount, currency, legal_entity)
    SELECT c.correlation_id, c.process, c.stage, '', 'reconciliation',
           md5(c.process || '/reconciliation/' ||
               array_to_string(ARRAY(SELECT jsonb_object_keys(c.mismatches) ORDER BY 1), ',')),
           'Mismatch',
           (SELECT string_agg(field || ': ' || (SELECT string_agg(key || '=' || value, ', '
                                                                  ORDER BY key)
                                                 FROM jsonb_each_text(by_system)), '; '
                              ORDER BY field)
            FROM jsonb_each(c.mismatches) AS m(field, by_system)),
           c.observed_at, c.observed_at, 1,
           t.customer_id, t.order_id, t.invoice_id, t.amount, t.currency, t.legal_entity
    FROM checked c
    LEFT JOIN transactions t ON t.correlation_id = c.correlation_id
    WHERE NOT c.matched
    ORDER BY c.correlation_id
    ON CONFLICT (correlation_id, stage, fingerprint)
        WHERE {ONE_OPEN_INDEX_PREDICATE}
    DO NOTHING
    RETURNING id
)
SELECT (SELECT count(*) FROM checked) AS checked,
       (SELECT count(*) FROM checked WHERE NOT matched) AS mismatched,
       (SELECT count(*) FROM opened) AS opened
"""

# Reconciliation exceptions whose transaction now agrees everywhere resolve themselves:
# those of the telemetry's reconciliation, not the breaks of the records on the same
# transaction (which only a run of their reconciliation resolves).
RESOLVE_RECONCILED = f"""
WITH resolved AS (
    UPDATE exceptions e
    SET status = 'auto_resolved', resolved_at = clock_timestamp(), updated_at = now(),
        resolution = 'reported values now agree'
    FROM reconciliations r, exceptions prev
    WHERE r.correlation_id = e.correlation_id AND r.matched
      AND e.correlation_id IN (SELECT correlation_id FROM _affected)
      AND prev.correlation_id = e.correlation_id AND prev.id = e.id
      AND e.kind = 'reconciliation' AND NOT starts_with(e.stage, '{RECORDS_STAGE_PREFIX}')
      AND q2c_is_open(e.status)
    RETURNING e.correlation_id, e.id, prev.status AS before_status, e.resolution
)
{audit_auto_resolved("resolved", "before_status")}
"""

# A transaction waiting longer than its next stage allows gets a `stalled` exception on
# that (missing) stage; its status becomes 'stalled' until the stage arrives. The stall is
# seen from the moment it became due (the previous stage reached, plus the wait allowed),
# not from when an evaluation noticed it, so that after a backfill or a scheduler outage
# its age, its due time and the stall counts of SLOs say when it really happened.
DETECT_STALLED = f"""
WITH waiting AS (
    SELECT t.correlation_id, t.process, t.current_stage, nxt.stage AS next_stage,
           nxt.stalled_after, nxt.stalled_label, t.customer_id, t.order_id, t.invoice_id,
           t.amount, t.currency, t.legal_entity,
           (SELECT min(s.reached_at) FROM stage_events s
            WHERE s.correlation_id = t.correlation_id AND s.stage = t.current_stage
              AND s.status = 'ok') AS reached_at
    FROM transactions t
    JOIN _catalog nxt ON nxt.process = t.process AND nxt.stage_index = t.stage_index + 1
    WHERE t.status = 'in_progress' AND t.last_event_at < %(now)s - %(shortest)s
), stalled AS (
    SELECT w.* FROM waiting w
    WHERE w.reached_at < %(now)s - w.stalled_after
      AND NOT EXISTS (SELECT 1 FROM stage_events s
                      WHERE s.correlation_id = w.correlation_id AND s.stage = w.next_stage
                        AND s.status = 'ok')
), opened AS (
    INSERT INTO exceptions (correlation_id, process, stage, system, kind, fingerprint,
                            error_type, message, first_seen, last_seen, occurrences,
                            customer_id, order_id, invoice_id, amount, currency, legal_entity)
    SELECT correlation_id, process, next_stage, '', 'stalled',
           md5(process || '/' || next_stage || '/stalled'), 'Stalled',
           format('no %%s within %%s after %%s at %%s', next_stage, stalled_label,
                  current_stage, to_char(reached_at AT TIME ZONE 'UTC',
                                         'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
           reached_at + stalled_after, reached_at + stalled_after, 1, customer_id, order_id,
           invoice_id, amount, currency, legal_entity
    FROM stalled
    ORDER BY correlation_id
    ON CONFLICT (correlation_id, stage, fingerprint)
        WHERE {ONE_OPEN_INDEX_PREDICATE}
    DO NOTHING
    RETURNING correlation_id
), marked AS (
    UPDATE transactions t SET status = 'stalled', updated_at = now()
    FROM stalled s WHERE s.correlation_id = t.correlation_id
    RETURNING t.correlation_id
)
SELECT (SELECT count(*) FROM opened), (SELECT count(*) FROM marked)
"""

# Open stalls recorded before stalls were dated from when they became due: dated so once
# (the wait allowed comes from the policy, so a migration cannot). It answers each one as
# UNCLASSIFIED does, and whether it was classified: those are classified again at once,
# since a due time is never taken away (an exception is classified, and announced as
# opened, once); the others by the classification that follows.
REDATE_OPEN_STALLS = """
WITH due AS (
    SELECT x.correlation_id, x.id,
           (SELECT min(s.reached_at) FROM stage_events s
            WHERE s.correlation_id = x.correlation_id AND s.stage = prev.stage
              AND s.status = 'ok') + waited.stalled_after AS became_due
    FROM exceptions x
    JOIN _catalog waited ON waited.process = x.process AND waited.stage = x.stage
    JOIN _catalog prev ON prev.process = x.process AND prev.stage_index = waited.stage_index - 1
    WHERE x.kind = 'stalled' AND q2c_is_open(x.status)
)
UPDATE exceptions e
SET first_seen = d.became_due, last_seen = d.became_due, updated_at = now()
FROM due d
WHERE e.correlation_id = d.correlation_id AND e.id = d.id AND d.became_due < e.first_seen
RETURNING e.id, e.correlation_id, e.process, e.stage, e.kind, e.amount::float8, e.first_seen,
          e.due_at IS NOT NULL AS classified
"""

# Stalls whose stage has arrived meanwhile (a race with the collector) resolve here.
RESOLVE_ARRIVED_STALLS = f"""
WITH resolved AS (
    UPDATE exceptions e
    SET status = 'auto_resolved', resolved_at = clock_timestamp(), updated_at = now(),
        resolution = 'stage ' || e.stage || ' arrived'
    FROM exceptions prev
    WHERE e.kind = 'stalled' AND q2c_is_open(e.status)
      AND prev.correlation_id = e.correlation_id AND prev.id = e.id
      AND EXISTS (SELECT 1 FROM stage_events s
                  WHERE s.correlation_id = e.correlation_id AND s.stage = e.stage
                    AND s.status = 'ok')
    RETURNING e.correlation_id, e.id, prev.status AS before_status, e.resolution
), events AS (
    {audit_auto_resolved("resolved", "before_status")}
)
UPDATE transactions t SET status = 'in_progress', updated_at = now()
FROM resolved r WHERE r.correlation_id = t.correlation_id AND t.status = 'stalled'
"""

UNCLASSIFIED = """
SELECT id, correlation_id, process, stage, kind, amount::float8, first_seen
FROM exceptions WHERE due_at IS NULL ORDER BY id LIMIT 10000
"""

CLASSIFY = """
UPDATE exceptions e SET impact = c.impact, due_at = c.due_at, updated_at = now()
FROM unnest(%(ids)s::bigint[], %(correlation_ids)s::text[], %(impacts)s::text[],
            %(due)s::timestamptz[]) AS c(id, correlation_id, impact, due_at)
WHERE e.correlation_id = c.correlation_id AND e.id = c.id
"""

# Exceptions closed in the window, counted per process, status and bucket.
COUNT_CLOSED = f"""
INSERT INTO kpi_counts AS k (name, process, bucket_seconds, bucket_start, value)
SELECT 'exceptions_' || e.status, coalesce(e.process, ''), res.s,
       {_BUCKET.format(ts="e.resolved_at")}, count(*)
FROM exceptions e CROSS JOIN (VALUES (300), (86400)) AS res(s)
WHERE e.resolved_at >= %(lower)s AND e.resolved_at < %(upper)s
  AND NOT q2c_is_open(e.status)
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
ON CONFLICT (name, process, bucket_seconds, bucket_start)
DO UPDATE SET value = k.value + excluded.value
"""

_UTC_TEXT = "to_char({ts} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
_UNTIL = _UTC_TEXT.format(ts="ignored_until")
_O_IS_OPEN = ONE_OPEN_INDEX_PREDICATE.replace("status", "o.status")  # o: another exception

# Ignores whose date has passed end: each exception opens again, unless another one is open
# for its failure by now (only one may be), which carries on; then its ignore just ends.
# Either way its history says why, as the system.
END_EXPIRED_IGNORES = f"""
WITH due AS (
    SELECT x.correlation_id, x.id, x.ignored_until,
           (SELECT o.id FROM exceptions o
            WHERE o.correlation_id = x.correlation_id AND o.stage = x.stage
              AND o.fingerprint = x.fingerprint AND {_O_IS_OPEN}
            LIMIT 1) AS open_id,
           row_number() OVER (PARTITION BY x.correlation_id, x.stage, x.fingerprint
                              ORDER BY x.id DESC) AS nth
    FROM exceptions x
    WHERE x.ignored_until <= %(now)s AND x.status = 'ignored'
), ended AS (
    UPDATE exceptions e
    SET status = CASE WHEN d.open_id IS NULL AND d.nth = 1 THEN {sql_reopened_status("e.owner")}
                      ELSE e.status END,
        resolved_at = CASE WHEN d.open_id IS NULL AND d.nth = 1 THEN NULL ELSE e.resolved_at END,
        resolution = CASE WHEN d.open_id IS NULL AND d.nth = 1 THEN NULL ELSE e.resolution END,
        ignored_until = NULL, updated_at = now()
    FROM due d
    WHERE e.correlation_id = d.correlation_id AND e.id = d.id
    RETURNING e.correlation_id, e.id, e.status, d.ignored_until, d.open_id
)
INSERT INTO exception_events (correlation_id, exception_id, actor, action, before, after, comment)
SELECT correlation_id, id, 'system',
       CASE WHEN status = 'ignored' THEN 'ignore_ended' ELSE 'reopened' END,
       jsonb_build_object('status', 'ignored', 'ignored_until', {_UNTIL}),
       jsonb_build_object('status', status, 'ignored_until', NULL),
       format('ignored until %%s, which has passed', {_UNTIL})
       || CASE WHEN status = 'ignored' AND open_id IS NOT NULL
               THEN format('; exception %%s is open for the same failure', open_id) ELSE '' END
FROM ended ORDER BY correlation_id, id
"""

# New exceptions (not classified yet: each is, once, right after this) whose failure a
# person had resolved before it happened are regressions: of the same transaction's stage,
# or else of the fingerprint group, when every exception of the group first seen before
# that resolve is closed. Each names the resolved exception (the latest resolve; the same
# transaction's first) and its history says so. The resolved one stays closed: the new
# failure is its own exception, as the collector keeps it (one episode, one exception).
MARK_REGRESSIONS = f"""
WITH fresh AS (
    SELECT e.correlation_id, e.id, e.stage, e.fingerprint, e.first_seen
    FROM exceptions e
    WHERE e.due_at IS NULL AND e.regressed_from IS NULL
), found AS (
    SELECT f.correlation_id, f.id, p.id AS from_id, p.resolved_at
    FROM fresh f
    CROSS JOIN LATERAL (
        SELECT p.id, p.resolved_at FROM exceptions p
        WHERE p.fingerprint = f.fingerprint AND p.status = 'resolved'
          AND p.resolved_at < f.first_seen
          AND ((p.correlation_id = f.correlation_id AND p.stage = f.stage)
               OR NOT EXISTS (SELECT 1 FROM exceptions o
                              WHERE o.fingerprint = f.fingerprint AND {_O_IS_OPEN}
                                AND o.first_seen <= p.resolved_at
                                AND NOT (o.correlation_id = f.correlation_id AND o.id = f.id)))
        ORDER BY (p.correlation_id = f.correlation_id AND p.stage = f.stage) DESC,
                 p.resolved_at DESC
        LIMIT 1) p
), marked AS (
    UPDATE exceptions e SET regressed_from = f.from_id, updated_at = now()
    FROM found f
    WHERE e.correlation_id = f.correlation_id AND e.id = f.id
    RETURNING e.correlation_id, e.id, f.from_id, f.resolved_at
)
INSERT INTO exception_events (correlation_id, exception_id, actor, action, before, after, comment)
SELECT correlation_id, id, 'system', 'regressed', jsonb_build_object('regressed_from', NULL),
       jsonb_build_object('regressed_from', from_id),
       format('exception %s was resolved at %s; this failure came after', from_id,
              {_UTC_TEXT.format(ts="resolved_at")})
FROM marked ORDER BY correlation_id, id
"""

"""Stored history for SLA benchmarks, generated inside PostgreSQL (fast, no Python loop):
`spans` rows plus the transactions, stage events, rollups, counters, exceptions and
reconciliations that many days of such traffic leave behind, all already evaluated."""

from __future__ import annotations

import psycopg

SPANS_PER_TRANSACTION = 12  # 3 stages, each 1 stage span + 3 technical spans
DAYS = 30

_PARTITIONS = """
SELECT q2c_ensure_partition(t::regclass, (now() AT TIME ZONE 'UTC')::date - d)
FROM generate_series(0, %(days)s) AS d, unnest(ARRAY['spans', 'log_records']) AS t
"""

_SPANS = """
INSERT INTO spans (correlation_id, trace_id, span_id, start_time, end_time, name, kind,
                   status_code, service_name, attributes)
SELECT 'BG-' || (g / 12), decode(md5('t' || (g / 4)), 'hex'),
       substring(decode(md5('s' || g), 'hex') FROM 1 FOR 8), ts, ts + interval '120 ms',
       'handler', 5, 0, 'erp-adapter',
       jsonb_build_object('q2c.correlation_id', 'BG-' || (g / 12),
                          'q2c.process', 'invoice_posting', 'q2c.stage', 'invoice_posted',
                          'q2c.system', 'billing', 'q2c.invoice_id', 'INV-' || (g / 12),
                          'q2c.amount', (g %% 9973) + 0.5, 'q2c.currency', 'EUR',
                          'http.route', '/api/v2/records', 'http.response.status_code', 201)
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
     LATERAL (SELECT now() - interval '1 hour'
                     - (g::double precision / %(total)s::bigint)
                       * make_interval(days => %(days)s) AS ts) AS t
"""

_DERIVED = """
INSERT INTO transactions (correlation_id, process, current_stage, stage_index, status,
                          started_at, completed_at, last_event_at, invoice_id, amount, currency)
SELECT 'BG-' || t, 'invoice_posting', 'collections_notified', 2, 'completed', ts,
       ts + interval '25 minutes', ts + interval '25 minutes', 'INV-' || t, (t %% 9973) + 0.5,
       'EUR'
FROM generate_series(0, %(transactions)s::integer - 1) AS t,
     LATERAL (SELECT now() - interval '2 hours'
                     - (t::double precision / %(transactions)s::integer)
                       * make_interval(days => %(days)s)
                     AS ts) AS x;

INSERT INTO stage_events (correlation_id, stage, system, process, reached_at, status,
                          last_ok_at, business, ingested_at)
SELECT correlation_id, s.stage, s.system, 'invoice_posting', started_at + s.offset_,
       'ok', started_at + s.offset_,
       jsonb_build_object('amount', amount::float8, 'currency', 'EUR'),
       started_at + s.offset_ + interval '2 seconds'
FROM transactions,
     (VALUES ('invoice_posted', 'billing', interval '0'),
             ('invoice_recorded', 'erp', interval '4 minutes'),
             ('collections_notified', 'collections', interval '25 minutes'))
         AS s(stage, system, offset_);

INSERT INTO rollup_progress (correlation_id, counted)
SELECT correlation_id, ARRAY['>invoice_posted', '>invoice_recorded', '>collections_notified',
                             'invoice_posted>invoice_recorded',
                             'invoice_posted>collections_notified',
                             'invoice_recorded>collections_notified']
FROM transactions;

INSERT INTO reconciliations (correlation_id, process, observed_at, matched, compared)
SELECT correlation_id, 'invoice_posting', completed_at, correlation_id NOT LIKE '%%7',
       '{}'::jsonb
FROM transactions;

INSERT INTO exceptions (correlation_id, process, stage, system, kind, fingerprint, error_type,
                        message, status, impact, first_seen, last_seen, due_at, resolved_at,
                        resolution, invoice_id, amount, currency)
SELECT correlation_id, 'invoice_posting', 'invoice_recorded', 'erp', 'error',
       'fp' || (hashtext(correlation_id) %% 40), 'ValidationError', 'tax code invalid',
       CASE WHEN hashtext(correlation_id) %% 10 = 0 THEN 'open' ELSE 'auto_resolved' END,
       (ARRAY['critical', 'high', 'medium', 'low'])[1 + abs(hashtext(correlation_id)) %% 4],
       started_at + interval '1 minute', started_at + interval '1 minute',
       started_at + interval '1 day',
       CASE WHEN hashtext(correlation_id) %% 10 = 0 THEN NULL
            ELSE started_at + interval '4 minutes' END,
       NULL, invoice_id, amount, currency
FROM transactions WHERE hashtext(correlation_id) %% 33 = 0;

INSERT INTO exception_occurrences (correlation_id, record_key, exception_id, stage, fingerprint,
                                   process, system, kind, occurred_at, error_type, message)
SELECT correlation_id, decode(md5(correlation_id), 'hex'), id, stage, fingerprint, process,
       system, kind, first_seen, error_type, message
FROM exceptions;

INSERT INTO dead_letters (correlation_id, dedup_key, idempotency_key, process, stage, system,
                          occurred_at, target_url, method, headers, content_type, payload,
                          error_type, error_message, exception_id)
SELECT correlation_id, decode(md5(correlation_id), 'hex'), 'q2c-dl-' || md5(correlation_id),
       process, stage, system, first_seen, 'http://erp.internal/invoices', 'POST',
       '{"Content-Type": "application/json"}', 'application/json',
       '{"invoice": "' || invoice_id || '"}', error_type, message, id
FROM exceptions WHERE hashtext(correlation_id) %% 3 = 0;

INSERT INTO rollups (process, from_stage, to_stage, bucket_seconds, bucket_start, count,
                     latency_sum_ms, latency_max_ms, histogram)
SELECT 'invoice_posting', p.from_stage, p.to_stage, res.s, b, 40, 40 * p.ms, p.ms * 2,
       CASE WHEN p.from_stage = '' THEN '{}'::jsonb
            ELSE jsonb_build_object(q2c_latency_bucket(p.ms * 0.8)::text, 10,
                                    q2c_latency_bucket(p.ms)::text, 20,
                                    q2c_latency_bucket(p.ms * 1.5)::text, 10) END
FROM (VALUES ('', 'invoice_posted', 0), ('', 'invoice_recorded', 0),
             ('', 'collections_notified', 0), ('invoice_posted', 'invoice_recorded', 240000),
             ('invoice_posted', 'collections_notified', 1500000),
             ('invoice_recorded', 'collections_notified', 1260000))
         AS p(from_stage, to_stage, ms),
     (VALUES (300), (86400)) AS res(s),
     LATERAL generate_series(
         to_timestamp(floor(extract(epoch FROM now() - make_interval(days => %(days)s))
                            / res.s) * res.s),
         now(), res.s * interval '1 second') AS b;

INSERT INTO kpi_counts (name, process, bucket_seconds, bucket_start, value)
SELECT c.name, 'invoice_posting', res.s, b, c.v
FROM (VALUES ('reconciliation_checked', 40), ('reconciliation_mismatched', 4),
             ('exceptions_auto_resolved', 2)) AS c(name, v),
     (VALUES (300), (86400)) AS res(s),
     LATERAL generate_series(
         to_timestamp(floor(extract(epoch FROM now() - make_interval(days => %(days)s))
                            / res.s) * res.s),
         now(), res.s * interval '1 second') AS b;

INSERT INTO watermarks (name, value) VALUES ('evaluate', clock_timestamp())
ON CONFLICT (name) DO UPDATE SET value = excluded.value;
"""

_CHUNK = 1_000_000


def fill(url: str, spans: int, days: int = DAYS) -> None:
    """Store `spans` spans and the derived history of their transactions in `url`."""
    transactions = max(1, spans // SPANS_PER_TRANSACTION)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_PARTITIONS, {"days": days + 1})
        for first in range(0, spans, _CHUNK):
            last = min(spans, first + _CHUNK) - 1
            conn.execute(_SPANS, {"first": first, "last": last, "total": spans, "days": days})
        with conn.transaction():
            for statement in _DERIVED.split(";\n\n"):
                conn.execute(statement, {"transactions": transactions, "days": days})
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")  # measure a settled server, not one still flushing the load

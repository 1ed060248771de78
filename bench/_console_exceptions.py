"""Open exceptions in bulk for the console benchmark, generated inside PostgreSQL: the
triage backlog of a busy finance-operations team, spread as such a backlog is.

Each exception gets its own failed transaction (`OPS-<n>`), its failures
(`exception_occurrences`, for the kinds that record them), the audit rows of whoever took it
(`exception_events`) and, for a dead-lettered message, its dead letter. The spread, drawn
with a fixed seed so that every run stores the same rows:

- where: the processes and stages of the SLA catalog, busiest processes first, a process's
  first stage failing least often;
- kind: 65 % errors, 15 % stalls (errors at a process's first stage, which nothing
  precedes), 10 % reconciliation mismatches, 10 % dead letters;
- impact: 5 % critical, 20 % high, 50 % medium, 25 % low; due by the policy's `impact_due`;
- status: 60 % open (no owner), 27 % assigned, 13 % in progress, among `owners`, the
  first of them busiest;
- fingerprint: up to 60 alike failures per place, a few common and a long tail (stalls and
  mismatches have one per place, as the evaluators give them);
- age: up to 30 days, most of them recent; occurrences 1 to about 10;
- money: amounts from 20 to 60,000 in USD, EUR, GBP, JPY and CAD (none for customer merges).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import psycopg

from sla.policy import Policy

SEED = 0.16  # setseed: the same rows every run
DAYS = 30  # the oldest exception's age
_PROCESS_WEIGHTS = {
    "invoice_posting": 35,
    "order_to_activation": 25,
    "payment_application": 20,
    "subscription_amendment": 12,
    "customer_merge": 8,
}
_FIRST_STAGE_SHARE = 0.1  # of its process's failures

_EXCEPTIONS = """
WITH places AS (
    SELECT * FROM jsonb_to_recordset(%(places)s::jsonb)
        AS p(lo float8, hi float8, process text, stage text, system text, stage_index int)
), draws AS (
    SELECT g, random() AS r_place, random() AS r_kind, random() AS r_impact,
           random() AS r_status, random() AS r_owner, random() AS r_fp, random() AS r_money,
           random() AS r_currency, random() AS r_age, random() AS r_occurrences
    FROM generate_series(1, %(count)s) AS g
), shaped AS (
    SELECT d.*, p.process, p.stage, p.system,
           -- A stall waits for a stage after the first; at the first one it is an error.
           CASE WHEN r_kind < 0.65 OR (r_kind < 0.80 AND p.stage_index = 0) THEN 'error'
                WHEN r_kind < 0.80 THEN 'stalled'
                WHEN r_kind < 0.90 THEN 'reconciliation' ELSE 'dead_letter' END AS kind,
           CASE WHEN r_impact < 0.05 THEN 'critical' WHEN r_impact < 0.25 THEN 'high'
                WHEN r_impact < 0.75 THEN 'medium' ELSE 'low' END AS impact,
           CASE WHEN r_status < 0.60 THEN 'open' WHEN r_status < 0.87 THEN 'assigned'
                ELSE 'in_progress' END AS status,
           floor(60 * r_fp ^ 3)::int AS variant,
           now() - interval '1 minute' - make_interval(days => %(days)s) * r_age ^ 2
               AS first_seen,
           CASE WHEN p.process = 'customer_merge' THEN NULL
                ELSE round(exp(3 + 8 * r_money)::numeric, 2) END AS amount,
           (ARRAY['USD', 'EUR', 'GBP', 'JPY', 'CAD'])[
               1 + (r_currency > 0.40)::int + (r_currency > 0.75)::int
                 + (r_currency > 0.90)::int + (r_currency > 0.95)::int] AS currency
    FROM draws d JOIN places p ON d.r_place >= p.lo AND d.r_place < p.hi
), described AS (
    SELECT s.*, 'OPS-' || g AS correlation_id,
           CASE WHEN kind IN ('error', 'dead_letter')
                THEN 1 + floor(-ln(1 - r_occurrences) * 2)::int ELSE 1 END AS occurrences,
           (ARRAY['ValidationError', 'TimeoutError', 'HTTPError', 'ConflictError',
                  'AuthorizationError', 'PeriodClosedError'])[1 + variant %% 6] AS error_type,
           (ARRAY['tax code # is not valid for this legal entity',
                  'timeout after # ms waiting for the target',
                  'HTTP 502 from upstream gateway (attempt #)',
                  'duplicate external id #', 'currency not enabled for account #',
                  'accounting period # is closed', 'customer # not found in target',
                  'rate limit exceeded: # requests per minute',
                  'schema validation failed at field line_items[#]',
                  'credentials for connector # expired'])[1 + variant %% 10] AS template
    FROM shaped s
)
INSERT INTO exceptions (correlation_id, process, stage, system, kind, fingerprint, error_type,
                        message, status, impact, owner, first_seen, last_seen, occurrences,
                        due_at, customer_id, order_id, invoice_id, amount, currency,
                        legal_entity)
SELECT correlation_id, process, stage,
       CASE WHEN kind IN ('stalled', 'reconciliation') THEN '' ELSE system END, kind,
       CASE kind WHEN 'stalled' THEN md5(process || '/' || stage || '/stalled')
                 WHEN 'reconciliation'
                 THEN md5(process || '/reconciliation/' || (ARRAY['amount', 'currency',
                          'customer_id', 'amount,tax_amount'])[1 + variant %% 4])
                 ELSE substr(md5(process || stage || system || kind || variant), 1, 16) END,
       CASE kind WHEN 'stalled' THEN 'Stalled' WHEN 'reconciliation' THEN 'Mismatch'
                 ELSE error_type END,
       CASE kind WHEN 'stalled' THEN format('no %%s within 30m after the previous stage', stage)
                 WHEN 'reconciliation' THEN format('amount: billing=%%s, erp=%%s', amount,
                                                   round(amount * 1.01, 2))
                 ELSE replace(template, '#', (g %% 9973)::text) END,
       status, impact,
       CASE WHEN status = 'open' THEN NULL
            ELSE (%(owners)s::text[])[1 + floor(cardinality(%(owners)s::text[])
                                                 * r_owner ^ 2)::int] END,
       first_seen,
       CASE WHEN occurrences = 1 THEN first_seen
            ELSE first_seen + (now() - first_seen) * r_occurrences END,
       occurrences, first_seen + (%(due)s::jsonb ->> impact)::interval,
       'CUS-' || lpad((g * 7919 %% 40000)::text, 6, '0'),
       CASE WHEN process = 'order_to_activation' THEN 'ORD-' || lpad(g::text, 7, '0') END,
       CASE WHEN process IN ('invoice_posting', 'payment_application')
            THEN 'INV-2026-' || lpad(g::text, 7, '0') END,
       amount, CASE WHEN amount IS NOT NULL THEN currency END,
       CASE WHEN amount IS NOT NULL
            THEN (ARRAY['US01', 'DE01', 'GB01', 'JP01', 'CA01'])[
                     array_position(ARRAY['USD', 'EUR', 'GBP', 'JPY', 'CAD'], currency)]
       END
FROM described
"""

_DERIVED = """
INSERT INTO transactions (correlation_id, process, current_stage, stage_index, status,
                          started_at, last_event_at, customer_id, order_id, invoice_id,
                          amount, currency, legal_entity)
SELECT e.correlation_id, e.process, e.stage, p.stage_index,
       CASE WHEN e.kind = 'stalled' THEN 'stalled' ELSE 'failed' END,
       e.first_seen - interval '5 minutes', e.last_seen, e.customer_id, e.order_id,
       e.invoice_id, e.amount, e.currency, e.legal_entity
FROM exceptions e JOIN jsonb_to_recordset(%(places)s::jsonb)
    AS p(process text, stage text, stage_index int) USING (process, stage)
WHERE e.correlation_id LIKE 'OPS-%%';

INSERT INTO exception_occurrences (correlation_id, record_key, exception_id, stage, fingerprint,
                                   process, system, kind, occurred_at, error_type, message,
                                   trace_id)
SELECT correlation_id, decode(md5(correlation_id || '/' || n), 'hex'), id, stage, fingerprint,
       process, system, kind,
       first_seen + (last_seen - first_seen) * (n - 1) / greatest(occurrences - 1, 1),
       error_type, message, decode(md5('trace/' || correlation_id || '/' || n), 'hex')
FROM exceptions, generate_series(1, occurrences) AS n
WHERE correlation_id LIKE 'OPS-%%' AND kind IN ('error', 'dead_letter');

INSERT INTO exception_events (correlation_id, exception_id, at, actor, action, before, after)
SELECT correlation_id, id, first_seen + (now() - first_seen) * 0.3, owner, 'assigned',
       '{"owner": null, "status": "open"}',
       jsonb_build_object('owner', owner, 'status', 'assigned')
FROM exceptions WHERE correlation_id LIKE 'OPS-%%' AND owner IS NOT NULL;

INSERT INTO exception_events (correlation_id, exception_id, at, actor, action, before, after)
SELECT correlation_id, id, first_seen + (now() - first_seen) * 0.6, owner, 'started_work',
       '{"status": "assigned"}', '{"status": "in_progress"}'
FROM exceptions WHERE correlation_id LIKE 'OPS-%%' AND status = 'in_progress';

INSERT INTO dead_letters (correlation_id, dedup_key, idempotency_key, process, stage, system,
                          occurred_at, target_url, method, headers, content_type, payload,
                          error_type, error_message, exception_id)
SELECT correlation_id, decode(md5(correlation_id), 'hex'), 'q2c-dl-' || md5(correlation_id),
       process, stage, system, first_seen, 'http://' || system || '.internal/records', 'POST',
       '{"Content-Type": "application/json"}', 'application/json',
       jsonb_build_object('customer', customer_id, 'invoice', invoice_id,
                          'amount', amount)::text,
       error_type, message, id
FROM exceptions WHERE correlation_id LIKE 'OPS-%%' AND kind = 'dead_letter'
"""


def places(policy: Policy) -> list[dict]:
    """Every stage of the catalog with the share of failures it gets, as ranges of [0, 1)."""
    weighted = []
    for process, spec in policy.processes.items():
        share = _PROCESS_WEIGHTS.get(process, 10)
        later = len(spec.stages) - 1
        for index, stage in enumerate(spec.stages):
            part = _FIRST_STAGE_SHARE if index == 0 else (1 - _FIRST_STAGE_SHARE) / later
            weighted.append((share * part, process, stage.name, stage.system, index))
    total = sum(weight for weight, *_ in weighted)
    rows, lo = [], 0.0
    for weight, process, name, system, index in weighted:
        hi = lo + weight / total
        rows.append(
            {
                "lo": lo,
                "hi": hi,
                "process": process,
                "stage": name,
                "system": system,
                "stage_index": index,
            }
        )
        lo = hi
    rows[-1]["hi"] = 1.0  # no draw falls past the last place by rounding
    return rows


def store_open_exceptions(url: str, count: int, policy: Policy, owners: Sequence[str]) -> None:
    """Store `count` open exceptions (and what goes with them) in `url`; `owners` must be
    users already."""
    catalog = json.dumps(places(policy))
    due = json.dumps(
        {impact: f"{d.total_seconds()} seconds" for impact, d in policy.impact_due.items()}
    )
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT setseed(%s)", (SEED,))
            conn.execute(
                _EXCEPTIONS,
                {
                    "places": catalog,
                    "count": count,
                    "days": DAYS,
                    "owners": list(owners),
                    "due": due,
                },
            )
            for statement in _DERIVED.split(";\n\n"):
                conn.execute(statement, {"places": catalog})
        conn.execute(
            "VACUUM ANALYZE exceptions, exception_occurrences, exception_events, "
            "transactions, dead_letters"
        )

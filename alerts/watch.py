"""The events of time passing, recorded in the outbox beside those of changes, which
triggers write (migrations 0017 and 0027): an open exception falling due
(`exception.overdue`, once per exception: into `alert_outbox`, as the exception's other
events) and a process's SLO alert state changing between ok, ticket and page (`slo.alert`,
with its burn rates: into `alert_events`).

One watch runs at a time across replicas (a transaction-scoped advisory lock; a second one
skips), and what it records commits with what it read, so a change is announced once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Engine

from queries.kpis import slos
from sla.policy import Policy

log = logging.getLogger(__name__)

LOCK_KEY = 0x51324357  # "Q2CW": the alerting watch's advisory lock
# How far back the first watch (or one after a long outage) looks for exceptions that fell
# due: older ones are the digests' backlog, not news.
LOOKBACK = timedelta(days=1)
_WATERMARK = "alerts.overdue"

# Into the outbox, one row for all of them (migration 0027); one told overdue before (its due
# time moved since) is left out here, and kept from repeating by the unpacking anyway.
RECORD_OVERDUE = """
INSERT INTO alert_outbox (types, correlation_ids, exception_ids, impacts, statuses, owners,
                          resolutions, facts)
SELECT array_agg('exception.overdue'::text), array_agg(e.correlation_id), array_agg(e.id),
       array_agg(e.impact), array_agg(e.status), array_agg(e.owner), array_agg(NULL::text),
       array_agg(NULL::jsonb)
FROM (SELECT e.correlation_id, e.id, e.impact, e.status, e.owner
      FROM exceptions e
      WHERE q2c_is_open(e.status) AND e.due_at IS NOT NULL
        AND e.due_at > %(since)s AND e.due_at <= %(now)s
        AND NOT EXISTS (SELECT 1 FROM alert_events a
                        WHERE a.exception_id = e.id AND a.type = 'exception.overdue')
      ORDER BY e.id) AS e
HAVING count(*) > 0
RETURNING cardinality(exception_ids)
"""

# The states as last announced, and the change of one (the event in the same statement).
ANNOUNCED_STATES = "SELECT process, state FROM slo_alert_states"
ANNOUNCE_STATE = """
WITH changed AS (
    INSERT INTO slo_alert_states AS s (process, state, changed_at, burn_rates)
    VALUES (%(process)s, %(state)s, %(now)s, %(burn_rates)s)
    ON CONFLICT (process) DO UPDATE
    SET state = excluded.state, changed_at = excluded.changed_at,
        burn_rates = excluded.burn_rates
    WHERE s.state <> excluded.state
    RETURNING process
)
INSERT INTO alert_events (type, facts)
SELECT 'slo.alert', jsonb_build_object(
    'process', %(process)s::text, 'state', %(state)s::text, 'previous', %(previous)s::text,
    'burn_rates', %(burn_rates)s, 'objective', %(objective)s, 'compliance', %(compliance)s::float8,
    'error_budget_remaining', %(budget)s::float8)
FROM changed
"""


@dataclass
class WatchReport:
    """What one watch recorded; `skipped` when another replica was watching."""

    skipped: bool = False
    overdue: int = 0
    slo_changes: list[str] = field(default_factory=list)  # "process: ok → page"


def watch(conn: psycopg.Connection, engine: Engine, policy: Policy, now: datetime) -> WatchReport:
    """Record the exceptions that fell due since the last watch and the SLO alert states
    that changed, on `conn` (autocommit), as of `now`. A process's first state is
    announced only if it is not ok (nobody needs telling that all is well)."""
    states = slos(engine, policy, now)  # read before the lock: it takes its own connection
    with conn.transaction():
        cur = conn.cursor()
        locked = cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,)).fetchone()
        if not (locked and locked[0]):
            return WatchReport(skipped=True)
        report = WatchReport()
        row = cur.execute("SELECT value FROM watermarks WHERE name = %s", (_WATERMARK,)).fetchone()
        since = max(row[0], now - LOOKBACK) if row else now - LOOKBACK
        recorded = cur.execute(RECORD_OVERDUE, {"since": since, "now": now}).fetchone()
        report.overdue = recorded[0] if recorded else 0
        cur.execute(
            "INSERT INTO watermarks (name, value) VALUES (%s, %s) ON CONFLICT (name) "
            "DO UPDATE SET value = greatest(watermarks.value, excluded.value), updated_at = now()",
            (_WATERMARK, now),
        )
        announced: dict[str, str] = dict(cur.execute(ANNOUNCED_STATES).fetchall())
        for process, slo in states.items():
            state, previous = slo["alert_state"], announced.get(process, "ok")
            if state == previous:
                continue
            cur.execute(
                ANNOUNCE_STATE,
                {
                    "process": process,
                    "state": state,
                    "previous": previous,
                    "now": now,
                    "burn_rates": Jsonb(slo["burn_rates"]),
                    "objective": Jsonb(slo["objective"]),
                    "compliance": slo["compliance"],
                    "budget": slo["error_budget_remaining"],
                },
            )
            report.slo_changes.append(f"{process}: {previous} → {state}")
    if report.overdue or report.slo_changes:
        log.info("alerting watch: %s overdue, SLO changes %s", report.overdue, report.slo_changes)
    return report

"""The alerting outbox: every event worth telling someone, recorded with its cause.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02

`alert_events` holds one row per event. Those of a change (`exception.opened`,
`exception.assigned`, `exception.regressed`, `exception.resolved`,
`exception.auto_resolved`, `dead_letter.created`, `replay.failed`) are written by triggers
in the same transaction as the change that caused it, whichever process made the change
(collector, scheduler, console, CLI): an event exists exactly when its change committed,
and a rolled-back or retried write leaves none. Those of time passing (`exception.overdue`,
once per exception; `slo.alert`, when a process's state in `slo_alert_states` changes;
`digest`) are written by the alerting watch (alerts/watch.py). The alerting router reads
the rows it has not routed yet (`routed_at` NULL) in id order.

The triggers are statement-level with transition tables: one INSERT … SELECT per statement
over the rows it changed, so a batch of the collector's costs one statement, not one per row.
Those that join a statement's rows before and after run it with EXECUTE, planned each time
for the rows at hand: PL/pgSQL would keep the plan of its first call in a session, made for
a few rows (a nested loop), and a statement changing 10,000 rows then took 33 s, not 0.25 s.

An exception is announced (`exception.opened`) once it is classified, when its impact and
due time are known (routes match on impact), and only while it is open; a regression
(`regressed_from`, which the evaluator sets right before it classifies) is announced then
too. Each at most once (`alert_events_once_idx`), though a redated stall is classified
again. Only an announced exception's closing is an event: one that opened and closed
before anybody could be told is nobody's news.
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE alert_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type           text NOT NULL CHECK (type IN (
                       'exception.opened', 'exception.assigned', 'exception.overdue',
                       'exception.regressed', 'exception.resolved', 'exception.auto_resolved',
                       'slo.alert', 'dead_letter.created', 'replay.failed', 'digest')),
    correlation_id text,  -- none for an SLO's alert or a digest
    exception_id   bigint,
    dead_letter_id bigint,
    replay_id      bigint,
    -- What routes match on and messages say (the exception's kind, impact, process, stage,
    -- system, owner, amount, fingerprint, …), as they were when the event happened.
    facts          jsonb NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    routed_at      timestamptz
);
CREATE INDEX alert_events_unrouted_idx ON alert_events (id) WHERE routed_at IS NULL;
CREATE UNIQUE INDEX alert_events_once_idx ON alert_events (exception_id, type)
    WHERE type IN ('exception.opened', 'exception.regressed', 'exception.overdue');
-- The alerting watch finds the exceptions that fell due since it last looked.
CREATE INDEX exceptions_due_open_idx ON exceptions (due_at)
    WHERE q2c_is_open(status) AND due_at IS NOT NULL;

-- Each process's SLO alert state as last announced: a change is a `slo.alert` event.
CREATE TABLE slo_alert_states (
    process    text PRIMARY KEY,
    state      text NOT NULL CHECK (state IN ('ok', 'ticket', 'page')),
    changed_at timestamptz NOT NULL,
    burn_rates jsonb NOT NULL DEFAULT '{}'
);

CREATE FUNCTION q2c_exception_facts(e exceptions) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'kind', e.kind, 'impact', e.impact, 'status', e.status, 'owner', e.owner,
        'process', e.process, 'stage', e.stage, 'system', e.system,
        'fingerprint', e.fingerprint, 'error_type', e.error_type, 'message', e.message,
        'amount', e.amount, 'currency', e.currency, 'invoice_id', e.invoice_id,
        'customer_id', e.customer_id, 'order_id', e.order_id,
        'legal_entity', e.legal_entity, 'first_seen', e.first_seen,
        'occurrences', e.occurrences, 'due_at', e.due_at,
        'regressed_from', e.regressed_from, 'resolution', e.resolution))
$$;

CREATE FUNCTION q2c_exceptions_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alert_events (type, correlation_id, exception_id, facts)
    SELECT 'exception.assigned', a.correlation_id, a.id, q2c_exception_facts(a)
    FROM added a WHERE a.owner IS NOT NULL AND q2c_is_open(a.status)
    ORDER BY a.id;
    RETURN NULL;
END $$;

CREATE FUNCTION q2c_exceptions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE $q$
    WITH change AS (
        SELECT q2c_exception_facts(n) AS facts, n.correlation_id, n.id,
               o.due_at IS NULL AND n.due_at IS NOT NULL AND q2c_is_open(n.status)
                   AS classified_open,
               n.regressed_from IS NOT NULL AS regressed,
               n.owner IS NOT NULL AND n.owner IS DISTINCT FROM o.owner
                   AND q2c_is_open(n.status) AS assigned,
               CASE WHEN n.status IS DISTINCT FROM o.status
                         AND n.status IN ('resolved', 'auto_resolved')
                    THEN 'exception.' || n.status END AS closed
        FROM before o JOIN after n ON n.correlation_id = o.correlation_id AND n.id = o.id
    ), happened AS (
        SELECT c.*, e.type, e.seq FROM change c
        CROSS JOIN LATERAL (VALUES
            (CASE WHEN c.classified_open THEN 'exception.opened' END, 1),
            (CASE WHEN c.classified_open AND c.regressed THEN 'exception.regressed' END, 2),
            (CASE WHEN c.assigned THEN 'exception.assigned' END, 3),
            (c.closed, 4)) AS e(type, seq)
        WHERE e.type IS NOT NULL
    )
    INSERT INTO alert_events (type, correlation_id, exception_id, facts)
    SELECT h.type, h.correlation_id, h.id, h.facts
    FROM happened h
    WHERE h.type NOT IN ('exception.resolved', 'exception.auto_resolved')
       OR EXISTS (SELECT 1 FROM alert_events a
                  WHERE a.exception_id = h.id AND a.type = 'exception.opened')
    ORDER BY h.id, h.seq
    ON CONFLICT (exception_id, type)
        WHERE type IN ('exception.opened', 'exception.regressed', 'exception.overdue')
    DO NOTHING
    $q$;
    RETURN NULL;
END $$;

CREATE FUNCTION q2c_dead_letters_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alert_events (type, correlation_id, exception_id, dead_letter_id, facts)
    SELECT 'dead_letter.created', d.correlation_id, d.exception_id, d.id,
           jsonb_strip_nulls(jsonb_build_object(
               'kind', 'dead_letter', 'process', d.process, 'stage', d.stage,
               'system', d.system, 'error_type', d.error_type, 'message', d.error_message,
               'target_url', d.target_url, 'occurred_at', d.occurred_at))
    FROM added d ORDER BY d.id;
    RETURN NULL;
END $$;

CREATE FUNCTION q2c_replays_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE $q$
    INSERT INTO alert_events (type, correlation_id, dead_letter_id, replay_id, facts)
    SELECT 'replay.failed', n.correlation_id, n.dead_letter_id, n.id,
           jsonb_strip_nulls(jsonb_build_object(
               'kind', 'dead_letter', 'process', d.process, 'stage', d.stage,
               'system', d.system, 'requested_by', n.requested_by, 'attempts', n.attempts,
               'response_code', n.response_code, 'error', n.error))
    FROM before o
    JOIN after n ON n.correlation_id = o.correlation_id AND n.id = o.id
    LEFT JOIN dead_letters d ON d.correlation_id = n.correlation_id AND d.id = n.dead_letter_id
    WHERE n.status = 'failed' AND o.status IS DISTINCT FROM 'failed'
    ORDER BY n.id
    $q$;
    RETURN NULL;
END $$;

CREATE TRIGGER exceptions_alert_added AFTER INSERT ON exceptions
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION q2c_exceptions_added();
CREATE TRIGGER exceptions_alert_changed AFTER UPDATE ON exceptions
    REFERENCING OLD TABLE AS before NEW TABLE AS after
    FOR EACH STATEMENT EXECUTE FUNCTION q2c_exceptions_changed();
CREATE TRIGGER dead_letters_alert_added AFTER INSERT ON dead_letters
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION q2c_dead_letters_added();
CREATE TRIGGER replays_alert_changed AFTER UPDATE ON replays
    REFERENCING OLD TABLE AS before NEW TABLE AS after
    FOR EACH STATEMENT EXECUTE FUNCTION q2c_replays_changed();
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP TRIGGER replays_alert_changed ON replays;
DROP TRIGGER dead_letters_alert_added ON dead_letters;
DROP TRIGGER exceptions_alert_changed ON exceptions;
DROP TRIGGER exceptions_alert_added ON exceptions;
DROP FUNCTION q2c_replays_changed();
DROP FUNCTION q2c_dead_letters_added();
DROP FUNCTION q2c_exceptions_changed();
DROP FUNCTION q2c_exceptions_added();
DROP FUNCTION q2c_exception_facts(exceptions);
DROP TABLE slo_alert_states;
DROP INDEX exceptions_due_open_idx;
DROP TABLE alert_events;
"""
    )

"""The outbox keeps of an exception's event only what may change later; unassigning and
reopening are events.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02

An exception's event used to carry all its facts as jsonb, built per row by the triggers:
classifying a storm's 10,000 exceptions spent 20-35 µs a row on them, and the SLA
evaluation took 1.3 times as long as without alerting. It now records in plain columns
what may change after the event and must be told as it was then: the exception's `impact`
(a redated stall is classified again), `status`, `owner` and `resolution`; and in `facts`
only what the event adds (who had an unassigned exception, the status a reopened one had).
What the exception is — its kind, process, stage, system, fingerprint, error, amounts,
business keys, occurrences, due time — is read from the exception when the event is read
(`q2c_event_facts`), usually seconds later; late telemetry may have filled it in
meanwhile, which is news too. Events recorded before keep their full facts, which still
win.

`exception.unassigned` (an owner taken away while it stays open; `previous_owner`) and
`exception.reopened` (closed, then open again — by a person, an ignore's end or its
failure's recurrence; `previous_status`) are recorded like the others, the latter for an
exception classified by then (its impact known).

The events of a statement are one INSERT … SELECT, one branch per event type, in the order
an exception's events happen; the events told once per exception are kept from repeating
by a probe of `alert_events_once_idx` (NOT EXISTS) rather than ON CONFLICT, whose
speculative insertion cost 5 µs a row: the row locks of the statement that changes an
exception already keep two from announcing it at once.
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_TYPES_0017 = """'exception.opened', 'exception.assigned', 'exception.overdue',
    'exception.regressed', 'exception.resolved', 'exception.auto_resolved',
    'slo.alert', 'dead_letter.created', 'replay.failed', 'digest'"""


def upgrade() -> None:
    op.execute(
        f"""
ALTER TABLE alert_events
    -- The exception's, as they were when the event happened (NULL for other events).
    ADD COLUMN impact     text,
    ADD COLUMN status     text,
    ADD COLUMN owner      text,
    ADD COLUMN resolution text,
    DROP CONSTRAINT alert_events_type_check,
    ADD CONSTRAINT alert_events_type_check CHECK (type IN ({_TYPES_0017},
        'exception.unassigned', 'exception.reopened'));

-- What routes match on and messages say of an event: for an exception's, what the exception
-- is now, with what may have changed since as it was then; for any other, its facts.
CREATE FUNCTION q2c_event_facts(a alert_events) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN starts_with(a.type, 'exception.') AND a.exception_id IS NOT NULL THEN
        coalesce((SELECT q2c_exception_facts(e) - ARRAY['impact', 'status', 'owner', 'resolution']
                  FROM exceptions e
                  WHERE e.correlation_id = a.correlation_id AND e.id = a.exception_id),
                 '{{}}')
        || jsonb_strip_nulls(jsonb_build_object('impact', a.impact, 'status', a.status,
                                                'owner', a.owner, 'resolution', a.resolution))
        || a.facts
    ELSE a.facts END
$$;

CREATE OR REPLACE FUNCTION q2c_exceptions_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alert_events (type, correlation_id, exception_id, impact, status, owner, facts)
    SELECT 'exception.assigned', a.correlation_id, a.id, a.impact, a.status, a.owner, '{{}}'
    FROM added a WHERE a.owner IS NOT NULL AND q2c_is_open(a.status)
    ORDER BY a.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION q2c_exceptions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE $q$
    WITH change AS MATERIALIZED (
        SELECT n.correlation_id, n.id, n.impact, n.status, n.owner, n.resolution,
               o.due_at IS NULL AND n.due_at IS NOT NULL AND q2c_is_open(n.status)
                   AS classified_open,
               n.regressed_from IS NOT NULL AS regressed,
               n.owner IS NOT NULL AND n.owner IS DISTINCT FROM o.owner
                   AND q2c_is_open(n.status) AS assigned,
               o.owner IS NOT NULL AND n.owner IS NULL AND q2c_is_open(n.status)
                   AS unassigned,
               NOT q2c_is_open(o.status) AND q2c_is_open(n.status) AND n.due_at IS NOT NULL
                   AS reopened,
               n.status IS DISTINCT FROM o.status AND n.status IN ('resolved', 'auto_resolved')
                   AS closed,
               o.owner AS previous_owner, o.status AS previous_status
        FROM before o JOIN after n ON n.correlation_id = o.correlation_id AND n.id = o.id
        WHERE (o.due_at IS NULL AND n.due_at IS NOT NULL)
           OR o.owner IS DISTINCT FROM n.owner OR o.status IS DISTINCT FROM n.status
    )
    INSERT INTO alert_events (type, correlation_id, exception_id, impact, status, owner,
                              resolution, facts)
    SELECT 'exception.opened', c.correlation_id, c.id, c.impact, c.status, c.owner,
           c.resolution, '{{}}'::jsonb
    FROM change c
    WHERE c.classified_open
      AND NOT EXISTS (SELECT 1 FROM alert_events a
                      WHERE a.exception_id = c.id AND a.type = 'exception.opened')
    UNION ALL
    SELECT 'exception.regressed', c.correlation_id, c.id, c.impact, c.status, c.owner,
           c.resolution, '{{}}'::jsonb
    FROM change c
    WHERE c.classified_open AND c.regressed
      AND NOT EXISTS (SELECT 1 FROM alert_events a
                      WHERE a.exception_id = c.id AND a.type = 'exception.regressed')
    UNION ALL
    SELECT 'exception.reopened', c.correlation_id, c.id, c.impact, c.status, c.owner,
           c.resolution, jsonb_build_object('previous_status', c.previous_status)
    FROM change c WHERE c.reopened
    UNION ALL
    SELECT 'exception.assigned', c.correlation_id, c.id, c.impact, c.status, c.owner,
           c.resolution, '{{}}'::jsonb
    FROM change c WHERE c.assigned
    UNION ALL
    SELECT 'exception.unassigned', c.correlation_id, c.id, c.impact, c.status, c.owner,
           c.resolution, jsonb_build_object('previous_owner', c.previous_owner)
    FROM change c WHERE c.unassigned
    UNION ALL
    SELECT 'exception.' || c.status, c.correlation_id, c.id, c.impact, c.status, c.owner,
           c.resolution, '{{}}'::jsonb
    FROM change c
    WHERE c.closed
      AND EXISTS (SELECT 1 FROM alert_events a
                  WHERE a.exception_id = c.id AND a.type = 'exception.opened')
    $q$;
    RETURN NULL;
END $$;
"""
    )


def downgrade() -> None:
    # The outbox as 0017 made it: the events of the new types and the columns go (their
    # facts with them), and the triggers build every fact again.
    op.execute(
        f"""
DELETE FROM alert_events WHERE type IN ('exception.unassigned', 'exception.reopened');
DROP FUNCTION q2c_event_facts(alert_events);
ALTER TABLE alert_events
    DROP CONSTRAINT alert_events_type_check,
    ADD CONSTRAINT alert_events_type_check CHECK (type IN ({_TYPES_0017})),
    DROP COLUMN impact, DROP COLUMN status, DROP COLUMN owner, DROP COLUMN resolution;

CREATE OR REPLACE FUNCTION q2c_exceptions_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alert_events (type, correlation_id, exception_id, facts)
    SELECT 'exception.assigned', a.correlation_id, a.id, q2c_exception_facts(a)
    FROM added a WHERE a.owner IS NOT NULL AND q2c_is_open(a.status)
    ORDER BY a.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION q2c_exceptions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""
    )

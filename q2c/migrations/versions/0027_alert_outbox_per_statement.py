"""An exception's events are recorded one row per statement (`alert_outbox`), and unpacked
into `alert_events` by the alerting pass.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07

Classifying a storm's 10,000 exceptions wrote 10,000 `alert_events` rows in the evaluation's
transaction: a heap row, its primary key, the once-only index and the router's index of
unrouted events each (about 370 bytes of WAL a row), 35-45 ms of a 600 ms evaluation. The
statement triggers of `exceptions` (and the alerting watch's overdue exceptions) now write
one `alert_outbox` row per statement, its events as parallel arrays (one element per event,
in the order they happen), which take a few bytes an event. The outbox row commits
with the change, as the events did; the alerting pass unpacks it before it assigns owners
and routes (`q2c_unpack_alert_outbox`, under the router's lock), in outbox order, into the
same `alert_events` rows as before, which everything downstream reads unchanged.

Unpacking decides what the triggers decided by probing `alert_events`, now that the events
are there:

- an exception's closing is told only if its opening was (an `exception.opened` already in
  `alert_events`, or in an earlier outbox row of the same unpacking: one statement never
  both opens and closes an exception);
- `exception.opened`, `exception.regressed` and `exception.overdue` are kept once per
  exception by `alert_events_once_idx` with ON CONFLICT DO NOTHING: a repeat is dropped,
  never an error that would stop every later event.

The runtime role may insert into the outbox (the triggers run as it) and read it, not
delete from it: unpacking runs with the owner's rights, as pruning does (migration 0023).
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

# Which transitions of a statement's rows are which events, and what each records: the
# exception's impact, status, owner and resolution as they are after the change, and in
# `facts` (NULL for none) what the event adds. One SELECT per event type, in the order an
# exception's events happen; the arrays keep the order of the UNION ALL's branches.
_CHANGE = """
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
    ), events AS (
        SELECT 'exception.opened' AS type, c.correlation_id, c.id, c.impact, c.status,
               c.owner, c.resolution, NULL::jsonb AS facts
        FROM change c WHERE c.classified_open
        UNION ALL
        SELECT 'exception.regressed', c.correlation_id, c.id, c.impact, c.status, c.owner,
               c.resolution, NULL
        FROM change c WHERE c.classified_open AND c.regressed
        UNION ALL
        SELECT 'exception.reopened', c.correlation_id, c.id, c.impact, c.status, c.owner,
               c.resolution, jsonb_build_object('previous_status', c.previous_status)
        FROM change c WHERE c.reopened
        UNION ALL
        SELECT 'exception.assigned', c.correlation_id, c.id, c.impact, c.status, c.owner,
               c.resolution, NULL
        FROM change c WHERE c.assigned
        UNION ALL
        SELECT 'exception.unassigned', c.correlation_id, c.id, c.impact, c.status, c.owner,
               c.resolution, jsonb_build_object('previous_owner', c.previous_owner)
        FROM change c WHERE c.unassigned
        UNION ALL
        SELECT 'exception.' || c.status, c.correlation_id, c.id, c.impact, c.status, c.owner,
               c.resolution, NULL
        FROM change c WHERE c.closed
    )
    INSERT INTO alert_outbox (types, correlation_ids, exception_ids, impacts, statuses,
                              owners, resolutions, facts)
    SELECT array_agg(type), array_agg(correlation_id), array_agg(id), array_agg(impact),
           array_agg(status), array_agg(owner), array_agg(resolution), array_agg(facts)
    FROM events HAVING count(*) > 0
"""

_UPGRADE = f"""
CREATE TABLE alert_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- One element per event, the n-th of each array the n-th event's.
    types           text[] NOT NULL,
    correlation_ids text[] NOT NULL,
    exception_ids   bigint[] NOT NULL,
    impacts         text[] NOT NULL,
    statuses        text[] NOT NULL,
    owners          text[] NOT NULL,
    resolutions     text[] NOT NULL,
    facts           jsonb[] NOT NULL,  -- NULL elements: the event adds nothing
    occurred_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- A storm's row holds hundreds of kilobytes of arrays, stored out of line: compressed with
-- lz4 at a fraction of pglz's cost (pglz took 16 ms of a 10,000-event row), or, on a
-- server built without lz4, not compressed at all (more WAL, less CPU than pglz).
DO $$
DECLARE
    arrays text[] := ARRAY['types', 'correlation_ids', 'exception_ids', 'impacts', 'statuses',
                           'owners', 'resolutions', 'facts'];
BEGIN
    EXECUTE 'ALTER TABLE alert_outbox ' || (
        SELECT string_agg(format('ALTER %I SET COMPRESSION lz4', a), ', ') FROM unnest(arrays) a);
EXCEPTION WHEN feature_not_supported THEN
    EXECUTE 'ALTER TABLE alert_outbox ' || (
        SELECT string_agg(format('ALTER %I SET STORAGE EXTERNAL', a), ', ') FROM unnest(arrays) a);
END $$;

CREATE OR REPLACE FUNCTION q2c_exceptions_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alert_outbox (types, correlation_ids, exception_ids, impacts, statuses,
                              owners, resolutions, facts)
    SELECT array_agg('exception.assigned'::text), array_agg(a.correlation_id), array_agg(a.id),
           array_agg(a.impact), array_agg(a.status), array_agg(a.owner),
           array_agg(a.resolution), array_agg(NULL::jsonb)
    FROM (SELECT * FROM added a WHERE a.owner IS NOT NULL AND q2c_is_open(a.status)
          ORDER BY a.id) a
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- Planned with each call for the rows at hand (EXECUTE), and hashing the join of the rows
-- before and after (the planner, which knows no transition table's size, would sort both).
CREATE OR REPLACE FUNCTION q2c_exceptions_changed() RETURNS trigger LANGUAGE plpgsql
SET enable_mergejoin = off AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM after) THEN
        RETURN NULL;
    END IF;
    EXECUTE $q${_CHANGE}$q$;
    RETURN NULL;
END $$;

-- Unpack up to `batches` outbox rows, oldest first, into alert_events: the rows taken and
-- the events written. The caller holds the router's lock, so events get their ids in the
-- order they happened.
CREATE FUNCTION q2c_unpack_alert_outbox(batches integer, OUT taken integer, OUT written bigint)
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') INTO ids
    FROM (SELECT id FROM alert_outbox ORDER BY id LIMIT batches FOR UPDATE) AS b;
    taken := cardinality(ids);
    WITH batch AS (
        DELETE FROM alert_outbox WHERE id = ANY(ids) RETURNING *
    ), item AS MATERIALIZED (
        SELECT b.id AS batch, u.*, b.occurred_at
        FROM batch b,
             unnest(b.types, b.correlation_ids, b.exception_ids, b.impacts, b.statuses,
                    b.owners, b.resolutions, b.facts)
                 WITH ORDINALITY AS u(type, correlation_id, exception_id, impact, status,
                                      owner, resolution, facts, ordinal)
    ), opened_here AS (
        SELECT i.exception_id, min(i.batch) AS batch FROM item i
        WHERE i.type = 'exception.opened' GROUP BY i.exception_id
    )
    INSERT INTO alert_events (type, correlation_id, exception_id, impact, status, owner,
                              resolution, facts, occurred_at)
    SELECT i.type, i.correlation_id, i.exception_id, i.impact, i.status, i.owner,
           i.resolution, coalesce(i.facts, '{{}}'), i.occurred_at
    FROM item i LEFT JOIN opened_here h ON h.exception_id = i.exception_id
    WHERE i.type NOT IN ('exception.resolved', 'exception.auto_resolved')
       OR h.batch < i.batch
       OR EXISTS (SELECT 1 FROM alert_events a
                  WHERE a.exception_id = i.exception_id AND a.type = 'exception.opened')
    ORDER BY i.batch, i.ordinal
    ON CONFLICT (exception_id, type)
        WHERE type IN ('exception.opened', 'exception.regressed', 'exception.overdue')
    DO NOTHING;
    GET DIAGNOSTICS written = ROW_COUNT;
END $$;

DO $$ BEGIN
    EXECUTE format('ALTER FUNCTION q2c_unpack_alert_outbox(integer) SECURITY DEFINER '
                   'SET search_path = %I, pg_temp', current_schema());
END $$;
REVOKE ALL ON FUNCTION q2c_unpack_alert_outbox(integer) FROM PUBLIC;
"""

# The triggers as migrations 0022, 0025 and 0026 left them.
_DOWNGRADE = """
SELECT q2c_unpack_alert_outbox(2147483647);
DROP FUNCTION q2c_unpack_alert_outbox(integer);

CREATE OR REPLACE FUNCTION q2c_exceptions_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alert_events (type, correlation_id, exception_id, impact, status, owner, facts)
    SELECT 'exception.assigned', a.correlation_id, a.id, a.impact, a.status, a.owner, '{}'
    FROM added a WHERE a.owner IS NOT NULL AND q2c_is_open(a.status)
    ORDER BY a.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION q2c_exceptions_changed() RETURNS trigger LANGUAGE plpgsql
SET enable_mergejoin = off AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM after) THEN
        RETURN NULL;
    END IF;
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
           c.resolution, '{}'::jsonb
    FROM change c
    WHERE c.classified_open
    UNION ALL
    SELECT 'exception.regressed', c.correlation_id, c.id, c.impact, c.status, c.owner,
           c.resolution, '{}'::jsonb
    FROM change c
    WHERE c.classified_open AND c.regressed
    UNION ALL
    SELECT 'exception.reopened', c.correlation_id, c.id, c.impact, c.status, c.owner,
           c.resolution, jsonb_build_object('previous_status', c.previous_status)
    FROM change c WHERE c.reopened
    UNION ALL
    SELECT 'exception.assigned', c.correlation_id, c.id, c.impact, c.status, c.owner,
           c.resolution, '{}'::jsonb
    FROM change c WHERE c.assigned
    UNION ALL
    SELECT 'exception.unassigned', c.correlation_id, c.id, c.impact, c.status, c.owner,
           c.resolution, jsonb_build_object('previous_owner', c.previous_owner)
    FROM change c WHERE c.unassigned
    UNION ALL
    SELECT 'exception.' || c.status, c.correlation_id, c.id, c.impact, c.status, c.owner,
           c.resolution, '{}'::jsonb
    FROM change c
    WHERE c.closed
      AND EXISTS (SELECT 1 FROM alert_events a
                  WHERE a.exception_id = c.id AND a.type = 'exception.opened')
    $q$;
    RETURN NULL;
END $$;

DROP TABLE alert_outbox;
"""


def upgrade() -> None:
    op.execute(_UPGRADE)


def downgrade() -> None:
    op.execute(_DOWNGRADE)

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

Two rules change place:

- An exception's closing is told only if it was announced. The trigger probed
  `alert_events` for its `exception.opened`, which may now still wait in the outbox; it
  asks instead whether the exception had been classified before it closed (a due time,
  which is never taken away): classified while open, it was announced as opened; classified
  once closed, it can close again only after a reopening, which was announced. (An
  exception classified before alerting existed, migration 0017, has its closing told.)
- `exception.opened`, `exception.regressed` and `exception.overdue` are kept once per
  exception by `alert_events_once_idx` with ON CONFLICT DO NOTHING when unpacked: a repeat
  is dropped, never an error that would stop every later event.

An outbox row's arrays are checked when written (as long as one another, only exceptions'
event types, no event without its type, exception or correlation ID), so that no row can
be written that unpacking would fail on. The runtime role may insert into the outbox (the
triggers run as it) and read it, not delete from it: unpacking runs with the owner's
rights, as pruning does (migration 0023), and takes the router's lock itself, so that two
never interleave.

Events other than an exception's (a dead letter, a failed replay, an SLO's state, a
digest) are still written to `alert_events` at once, so a dead letter's
`dead_letter.created` may get a lower id than an event of its exception recorded before
it; the router files each into its groups all the same.
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

# Which transitions of a statement's rows are which events (a closing only of an exception
# classified before, so announced), and what each records: the exception's impact, status,
# owner and resolution as they are after the change, and in `facts` (NULL for none) what
# the event adds. One SELECT per event type, in the order an
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
                   AND o.due_at IS NOT NULL AS closed,
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

# The router's advisory lock (alerts/run.py LOCK_KEY, 0x51324341 "Q2CA").
_ROUTER_LOCK = 1362248513
_EXCEPTION_EVENTS = """'exception.opened', 'exception.regressed', 'exception.reopened',
    'exception.assigned', 'exception.unassigned', 'exception.resolved',
    'exception.auto_resolved', 'exception.overdue'"""
_ARRAYS = ("correlation_ids", "exception_ids", "impacts", "statuses", "owners", "resolutions")
_ALIGNED = "\n        AND ".join(f"cardinality({a}) = cardinality(types)" for a in _ARRAYS)

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
    occurred_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- What unpacking needs of every row; <@ is false for a NULL type too.
    CONSTRAINT alert_outbox_events_check CHECK (
        types <@ ARRAY[{_EXCEPTION_EVENTS}]
        AND {_ALIGNED}
        AND cardinality(facts) = cardinality(types)
        AND array_position(exception_ids, NULL) IS NULL
        AND array_position(correlation_ids, NULL) IS NULL)
);
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

-- Unpack up to `batches` outbox rows (at most 1,000), oldest first, of those up to `up_to`
-- (NULL: all), into alert_events: the events written, and whether rows up to `up_to`
-- remain. Under the router's lock (which a pass already holds), so that events get their
-- ids in the order they happened.
CREATE FUNCTION q2c_unpack_alert_outbox(batches integer, up_to bigint,
                                        OUT written bigint, OUT more boolean)
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    PERFORM pg_advisory_xact_lock({_ROUTER_LOCK});
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') INTO ids
    FROM (SELECT id FROM alert_outbox WHERE up_to IS NULL OR id <= up_to
          ORDER BY id LIMIT least(batches, 1000) FOR UPDATE) AS b;
    WITH batch AS (
        DELETE FROM alert_outbox WHERE id = ANY(ids) RETURNING *
    )
    INSERT INTO alert_events (type, correlation_id, exception_id, impact, status, owner,
                              resolution, facts, occurred_at)
    SELECT u.type, u.correlation_id, u.exception_id, u.impact, u.status, u.owner,
           u.resolution, coalesce(u.facts, '{{}}'), b.occurred_at
    FROM batch b,
         unnest(b.types, b.correlation_ids, b.exception_ids, b.impacts, b.statuses,
                b.owners, b.resolutions, b.facts)
             WITH ORDINALITY AS u(type, correlation_id, exception_id, impact, status, owner,
                                  resolution, facts, ordinal)
    ORDER BY b.id, u.ordinal
    ON CONFLICT (exception_id, type)
        WHERE type IN ('exception.opened', 'exception.regressed', 'exception.overdue')
    DO NOTHING;
    GET DIAGNOSTICS written = ROW_COUNT;
    more := EXISTS (SELECT FROM alert_outbox WHERE up_to IS NULL OR id <= up_to);
END $$;

DO $$ BEGIN
    EXECUTE format('ALTER FUNCTION q2c_unpack_alert_outbox(integer, bigint) SECURITY DEFINER '
                   'SET search_path = %I, pg_temp', current_schema());
END $$;
REVOKE ALL ON FUNCTION q2c_unpack_alert_outbox(integer, bigint) FROM PUBLIC;
"""

# The triggers as migrations 0022, 0025 and 0026 left them.
# Writers wait (or fail) while what the outbox holds is unpacked: none is lost with it.
_DOWNGRADE = """
LOCK TABLE alert_outbox IN ACCESS EXCLUSIVE MODE;
DO $$ BEGIN
    WHILE (SELECT more FROM q2c_unpack_alert_outbox(1000, NULL)) LOOP
    END LOOP;
END $$;
DROP FUNCTION q2c_unpack_alert_outbox(integer, bigint);

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

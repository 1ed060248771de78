"""Partitions are created and dropped with the owner's rights, within the owner's limits.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

The runtime role owns no table (so it cannot alter or switch off the audit trail's
triggers), yet collectors create tomorrow's partition as rows arrive and the scheduler drops
those past retention, both of which only an owner may do. So:

- `q2c_settings` holds the retention and the days ahead, written by `q2c migrate` (the
  owner); the runtime role may only read it.
- `q2c_ensure_partition(parent, day)` runs as its owner; for any caller but the owner it
  refuses days outside [today - retention - 1, today + days ahead + 1], so the runtime role
  cannot fill the catalog with partitions.
- `q2c_maintain_partitions()` (no arguments) runs as its owner with those settings and
  today's date; the form that takes them as arguments is the owner's alone, so the runtime
  role cannot pass a retention that drops everything.

Every owner-rights function has a fixed search_path, so no caller can put objects of its own
in their way, and only roles granted EXECUTE may call them.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_UPGRADE = r"""
CREATE TABLE q2c_settings (
    singleton             boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    retention_days        integer NOT NULL CHECK (retention_days BETWEEN 1 AND 3650),
    partitions_ahead_days integer NOT NULL CHECK (partitions_ahead_days BETWEEN 1 AND 60)
);
INSERT INTO q2c_settings (retention_days, partitions_ahead_days) VALUES (30, 3);

CREATE OR REPLACE FUNCTION q2c_ensure_partition(parent regclass, day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name text := format('%s_p%s', parent::text, to_char(day, 'YYYYMMDD'));
    today date := (now() AT TIME ZONE 'UTC')::date;
    limits q2c_settings;
BEGIN
    IF NOT pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = parent),
                       'MEMBER') THEN
        SELECT * INTO limits FROM q2c_settings;
        IF day < today - limits.retention_days - 1
           OR day > today + limits.partitions_ahead_days + 1 THEN
            RAISE EXCEPTION 'no partition of % for %: outside the retention window', parent, day
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF to_regclass(name) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
        name, parent,
        (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC'));
    RETURN name;
EXCEPTION WHEN duplicate_table THEN
    RETURN NULL;  -- another session created it first
END $$;

CREATE FUNCTION q2c_maintain_partitions() RETURNS TABLE (action text, partition_name text)
LANGUAGE sql AS $$
    SELECT m.action, m.partition_name
    FROM q2c_settings s,
         q2c_maintain_partitions(s.retention_days, s.partitions_ahead_days) m
$$;

DO $$ BEGIN
    EXECUTE format('ALTER FUNCTION q2c_ensure_partition(regclass, date) SECURITY DEFINER '
                   'SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION q2c_maintain_partitions() SECURITY DEFINER '
                   'SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION q2c_maintain_partitions(integer, integer, date) '
                   'SET search_path = %I, pg_temp', current_schema());
END $$;
REVOKE ALL ON FUNCTION q2c_ensure_partition(regclass, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION q2c_maintain_partitions() FROM PUBLIC;
REVOKE ALL ON FUNCTION q2c_maintain_partitions(integer, integer, date) FROM PUBLIC;
"""

_DOWNGRADE = r"""
DROP FUNCTION q2c_maintain_partitions();
ALTER FUNCTION q2c_ensure_partition(regclass, date) SECURITY INVOKER RESET search_path;
ALTER FUNCTION q2c_maintain_partitions(integer, integer, date) RESET search_path;
GRANT EXECUTE ON FUNCTION q2c_ensure_partition(regclass, date) TO PUBLIC;
GRANT EXECUTE ON FUNCTION q2c_maintain_partitions(integer, integer, date) TO PUBLIC;
DROP TABLE q2c_settings;
"""


def upgrade() -> None:
    op.execute(_UPGRADE)


def downgrade() -> None:
    op.execute(_DOWNGRADE)

"""Old reconciliation runs are pruned, with the owner's rights, keeping each one's latest.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02

Every run records its breaks again (a break open for a week is recorded by every run of
that week: its history), so `reconciliation_breaks` grows by a run's breaks every run.
`q2c_prune_reconciliation_runs(retention, batch)` deletes up to `batch` runs finished
before `now() - retention`, with their breaks and accuracy per pair — never a running run,
nor the latest succeeded run of a reconciliation (its breaks are the ones the console
shows). The exceptions the breaks opened are not touched (they have their own lifecycle),
nor the accepted differences (an acceptance holds until the records change). The runtime
role may not delete these rows itself (append-only to it), and may not ask for less than
a day; the owner may (tests).
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

_UPGRADE = r"""
CREATE FUNCTION q2c_prune_reconciliation_runs(retention interval, batch integer)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    doomed bigint[];
BEGIN
    IF retention < interval '1 day'
       AND NOT pg_has_role(session_user,
                           (SELECT relowner FROM pg_class
                            WHERE oid = 'reconciliation_runs'::regclass),
                           'MEMBER') THEN
        RAISE EXCEPTION 'reconciliation runs are kept at least a day (asked: %)', retention
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT coalesce(array_agg(id), '{}') INTO doomed FROM (
        SELECT r.id FROM reconciliation_runs r
        WHERE r.finished_at < now() - retention
          AND r.id <> coalesce((SELECT max(l.id) FROM reconciliation_runs l
                                WHERE l.reconciliation = r.reconciliation
                                  AND l.status = 'succeeded'), 0)
        ORDER BY r.id LIMIT batch
        FOR UPDATE OF r SKIP LOCKED) AS d;
    DELETE FROM reconciliation_breaks WHERE run_id = ANY(doomed);
    DELETE FROM reconciliation_accuracy WHERE run_id = ANY(doomed);
    DELETE FROM reconciliation_runs WHERE id = ANY(doomed);
    RETURN cardinality(doomed);
END $$;

DO $$ BEGIN
    EXECUTE format('ALTER FUNCTION q2c_prune_reconciliation_runs(interval, integer) '
                   'SECURITY DEFINER SET search_path = %I, pg_temp', current_schema());
END $$;
REVOKE ALL ON FUNCTION q2c_prune_reconciliation_runs(interval, integer) FROM PUBLIC;
"""


def upgrade() -> None:
    op.execute(_UPGRADE)


def downgrade() -> None:
    op.execute("DROP FUNCTION q2c_prune_reconciliation_runs(interval, integer)")

"""Failure occurrences and success times: exceptions placed by time, whatever the order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

Each failure a collector stores becomes a row of `exception_occurrences`, linked to the
exception it belongs to, and every stage row keeps the times the stage succeeded
(`stage_events.ok_times`). With both, a transaction's failure episodes (failures of one
stage and fingerprint up to the success that ended them) are a function of what happened,
not of the order deliveries arrived in: a late success splits an exception, a late failure
joins the episode it belongs to.

Exceptions recorded before this revision get summary occurrences: one at `first_seen` and,
when there were more, one at `last_seen` standing for the rest (`occurrences` > 1).
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE stage_events ADD COLUMN ok_times timestamptz[] NOT NULL DEFAULT '{}';
        UPDATE stage_events SET ok_times = ARRAY(
            SELECT DISTINCT t FROM unnest(ARRAY[
                last_ok_at, CASE WHEN status = 'ok' THEN reached_at END]) AS t
            WHERE t IS NOT NULL ORDER BY t)
        WHERE last_ok_at IS NOT NULL OR status = 'ok';

        CREATE TABLE exception_occurrences (
            correlation_id text NOT NULL,
            record_key bytea NOT NULL,
            exception_id bigint NOT NULL,
            stage text NOT NULL,
            fingerprint text NOT NULL,
            process text,
            system text NOT NULL DEFAULT '',
            kind text NOT NULL CHECK (kind IN ('error', 'dead_letter')),
            occurred_at timestamptz NOT NULL,
            error_type text,
            message text,
            trace_id bytea,
            span_id bytea,
            occurrences integer NOT NULL DEFAULT 1 CHECK (occurrences > 0),
            PRIMARY KEY (correlation_id, record_key),
            FOREIGN KEY (correlation_id, exception_id) REFERENCES exceptions (correlation_id, id)
        );
        COMMENT ON COLUMN exception_occurrences.occurrences IS
            'failures this row stands for: 1, more for a summary of failures recorded '
            'before occurrences were kept';

        INSERT INTO exception_occurrences (correlation_id, record_key, exception_id, stage,
            fingerprint, process, system, kind, occurred_at, error_type, message, occurrences)
        SELECT e.correlation_id, convert_to('legacy:' || e.id || ':' || part.n, 'UTF8'), e.id,
               e.stage, e.fingerprint, e.process, e.system, e.kind, part.at, e.error_type,
               e.message, part.occurrences
        FROM exceptions e
        CROSS JOIN LATERAL (VALUES (1, e.first_seen, 1),
                                   (2, e.last_seen, e.occurrences - 1)) AS part(n, at, occurrences)
        WHERE e.kind IN ('error', 'dead_letter') AND part.occurrences > 0;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE exception_occurrences;
        ALTER TABLE stage_events DROP COLUMN ok_times;
        """
    )

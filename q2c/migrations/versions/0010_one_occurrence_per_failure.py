"""One occurrence per failure, however many records report it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

A failure reported both by its span and by its log record (same transaction, stage,
fingerprint and time; one of them may lack the span ID) was kept as two occurrences, so
an exception counted it twice. The collector now keeps one; this migration removes the
extra occurrences already stored and takes them off their exceptions' counts. Failures of
two different spans at the same moment stay two. Summary rows of the oldest versions
(standing for several failures) are left as they are. An index finds a failure's other
records by what makes them the same failure, so that a transaction's thousandth failure
costs what its first did.

Irreversible in effect: the downgrade keeps the rows as they are.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE INDEX exception_occurrences_failure_idx
    ON exception_occurrences (correlation_id, stage, fingerprint, occurred_at);

WITH ranked AS (
    SELECT correlation_id, record_key, exception_id, span_id,
           row_number() OVER (PARTITION BY correlation_id, stage, fingerprint, occurred_at,
                                           span_id ORDER BY record_key) AS nth_of_span,
           count(span_id) OVER (PARTITION BY correlation_id, stage, fingerprint,
                                             occurred_at) AS spans
    FROM exception_occurrences
    WHERE occurrences = 1
), extra AS (  -- all but one record per span; records without a span ID where one has it
    SELECT correlation_id, record_key FROM ranked
    WHERE nth_of_span > 1 OR (span_id IS NULL AND spans > 0)
), removed AS (
    DELETE FROM exception_occurrences o USING extra e
    WHERE o.correlation_id = e.correlation_id AND o.record_key = e.record_key
    RETURNING o.correlation_id, o.exception_id
)
UPDATE exceptions x SET occurrences = x.occurrences - r.extra, updated_at = now()
FROM (SELECT correlation_id, exception_id, count(*) AS extra FROM removed
      GROUP BY correlation_id, exception_id) r
WHERE x.correlation_id = r.correlation_id AND x.id = r.exception_id;
"""
    )


def downgrade() -> None:
    # The extra occurrences were duplicates: there is nothing to restore.
    op.execute("DROP INDEX exception_occurrences_failure_idx")

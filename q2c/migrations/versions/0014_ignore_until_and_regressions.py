"""Ignoring until a date or until the failure recurs; regressions of resolved failures.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

An ignored exception may carry `ignored_until` (the evaluator reopens it once that moment
has passed) or `ignored_until_recurs` (the collector reopens it when its failure happens
again), never both. A new exception whose failure a person had resolved before it
happened names that resolved exception in `regressed_from` (set by the evaluator).

The partial indexes keep the evaluator's look-ups small: ignores that expire, and the
resolved and the open exceptions of one fingerprint (new exceptions, the ones checked for a
regression, are found by exceptions_unclassified_idx of 0002).
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE exceptions
    ADD COLUMN ignored_until timestamptz,
    ADD COLUMN ignored_until_recurs boolean NOT NULL DEFAULT false,
    ADD COLUMN regressed_from bigint,
    ADD CONSTRAINT exceptions_ignored_until_check
        CHECK (ignored_until IS NULL OR NOT ignored_until_recurs);
CREATE INDEX exceptions_ignored_until_idx ON exceptions (ignored_until)
    WHERE ignored_until IS NOT NULL;
CREATE INDEX exceptions_resolved_fingerprint_idx ON exceptions (fingerprint, resolved_at)
    WHERE status = 'resolved';
CREATE INDEX exceptions_open_fingerprint_idx ON exceptions (fingerprint, first_seen)
    WHERE status NOT IN ('resolved', 'auto_resolved', 'ignored');
CREATE INDEX exceptions_regressed_idx ON exceptions (regressed_from)
    WHERE regressed_from IS NOT NULL;
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP INDEX exceptions_regressed_idx, exceptions_open_fingerprint_idx,
    exceptions_resolved_fingerprint_idx, exceptions_ignored_until_idx;
ALTER TABLE exceptions DROP CONSTRAINT exceptions_ignored_until_check,
    DROP COLUMN regressed_from, DROP COLUMN ignored_until_recurs, DROP COLUMN ignored_until;
"""
    )

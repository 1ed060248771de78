"""One searchable text per exception, and recent transactions by an index.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02

The exceptions list's text search looked for the term in six columns with ILIKE, each
lower-casing its value on every row; `search_text` holds them lower-cased once, as the row
is written, so that a search is one LIKE per row. (A trigram index would make it an index
probe, but pg_trgm is a contrib extension the embedded PostgreSQL does not ship.)

The trace explorer opens on the transactions that moved last: `transactions_recent_idx`
reads them, backwards, without sorting every transaction. It ascends so that the writer's
inserts, of ever later moments, land on its rightmost page (B-tree's fast path): a
descending one cost the collector's transactions upsert more than twice as much.
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE exceptions ADD COLUMN search_text text GENERATED ALWAYS AS (lower(
    coalesce(message, '') || ' ' || coalesce(error_type, '') || ' ' || correlation_id || ' '
    || coalesce(invoice_id, '') || ' ' || coalesce(customer_id, '') || ' '
    || coalesce(order_id, ''))) STORED;
CREATE INDEX transactions_recent_idx ON transactions (last_event_at);
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP INDEX transactions_recent_idx;
ALTER TABLE exceptions DROP COLUMN search_text;
"""
    )

"""An index of the exception events that name a dead letter, for the audit log's
"dead letter" object filter.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07

A dead letter's replays (asked, delivered, failed) and its discard are filed with its
exception, each naming the letter in `after`; the audit log finds them by it. Without an
index each such read scanned every exception event. Partial: only those events are in it.
"""

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX exception_events_dead_letter_idx "
        "ON exception_events ((after ->> 'dead_letter_id')) WHERE after ? 'dead_letter_id'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX exception_events_dead_letter_idx")

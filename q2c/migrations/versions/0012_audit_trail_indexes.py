"""Indexes for reading the audit trails back, newest first, by time and by actor.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

The audit-log page reads `audit_log` and `exception_events` together, newest first,
filtered by actor and time; `audit_log` has those indexes since 0008, `exception_events`
only had its per-exception one.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE INDEX exception_events_at_idx ON exception_events (at);
CREATE INDEX exception_events_actor_idx ON exception_events (actor, at);
"""
    )


def downgrade() -> None:
    op.execute("DROP INDEX exception_events_actor_idx; DROP INDEX exception_events_at_idx")

"""Replay dispatch: a lease on each delivery being attempted.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

A dispatcher claims a replay by setting `delivering` and a lease; if it dies mid-delivery,
another dispatcher takes the replay over when the lease runs out (the target sees the same
Idempotency-Key and so applies it at most once).
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE replays ADD COLUMN lease_until timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE replays DROP COLUMN lease_until")

"""Dead letters keep why their replay target was refused.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

A dead letter whose recorded target cannot be used (control characters, credentials, a bad
port, not http(s)) is still stored, since the failure it reports must not be lost; its
`target_url` stays empty and `target_error` says what was refused, so that a replay request
names the reason instead of reaching the HTTP client.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE dead_letters ADD COLUMN target_error text")


def downgrade() -> None:
    op.execute("ALTER TABLE dead_letters DROP COLUMN target_error")

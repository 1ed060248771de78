"""One spelling of "open" for SQL: q2c_is_open(status).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

The statuses an exception is open in were spelled out in every statement that needed them;
statements now ask this function, which q2c.vocabulary.OPEN_STATUSES matches (a test holds
the two together). It is a plain SQL expression the planner inlines, so indexes on status
serve it as they served the lists. The partial unique index of open exceptions keeps its
own predicate, which ON CONFLICT clauses must repeat word for word.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE FUNCTION q2c_is_open(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT status IN ('open', 'assigned', 'in_progress', 'replayed') $$;
"""
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION q2c_is_open(text)")

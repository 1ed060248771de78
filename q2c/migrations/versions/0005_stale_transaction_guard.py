"""A guard for concurrent writers: a statement can ask to be retried.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

Two collector writers may store different stages of one transaction at the same time. The
transaction row is computed from its stage rows as the statement's snapshot shows them; if
the other writer commits the row while this one waits for it, that computation lacks the
other writer's stages. `q2c_retry_statement` raises serialization_failure (SQLSTATE 40001),
which the writer answers by running its transaction again on a fresh snapshot.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE FUNCTION q2c_retry_statement(reason text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'serialization_failure', MESSAGE = reason;
END $$;
"""
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION q2c_retry_statement(text)")

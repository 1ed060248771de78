"""Console sessions that survive a reload or a new tab.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

Signing in to the console opens a session: its token lives in a cookie in the browser and
only its SHA-256 here, with when it expires, the role it was opened with and when it was
closed. A session is good only while it is open, unexpired, its user enabled and of the
same role: signing out closes it, and disabling a user or changing their role ends it.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE console_sessions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    username    text NOT NULL REFERENCES users (username) ON UPDATE CASCADE,
    role        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    closed_at   timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX console_sessions_user_idx ON console_sessions (username);
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE console_sessions")

"""Saved views: a person's named filter sets of the exceptions list.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02

A view is the query string of the list's address (its filters and order), under a name
unique per owner: opening it is opening that link, so a view is shared by sending it.
Each person lists, replaces and deletes their own.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE saved_views (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner      text NOT NULL REFERENCES users (username) ON UPDATE CASCADE,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    query      text NOT NULL CHECK (length(query) <= 2000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner, name)
);
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE saved_views")

"""Redrives: many dead letters replayed at a set rate, with progress and cancel.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

A redrive is one person's request to replay every dead letter a filter matched, at most
`rate_per_second` of them a second: its replays are scheduled that far apart
(`next_attempt_at`), so the rate holds however many dispatchers run. Its progress is its
replays' statuses; cancelling it cancels those still pending (status `cancelled`, their
dead letters `dead` again), never one already being delivered.
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE redrives (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requested_by    text NOT NULL REFERENCES users (username) ON UPDATE CASCADE,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    filter          jsonb NOT NULL,
    rate_per_second numeric(8, 3) NOT NULL CHECK (rate_per_second > 0 AND rate_per_second <= 1000),
    total           integer NOT NULL CHECK (total >= 0),
    cancelled_at    timestamptz,
    cancelled_by    text REFERENCES users (username) ON UPDATE CASCADE
);
ALTER TABLE replays ADD COLUMN redrive_id bigint REFERENCES redrives (id);
CREATE INDEX replays_redrive_idx ON replays (redrive_id) WHERE redrive_id IS NOT NULL;
ALTER TABLE replays DROP CONSTRAINT replays_status_check;
ALTER TABLE replays ADD CONSTRAINT replays_status_check
    CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed', 'cancelled'));
"""
    )


def downgrade() -> None:
    op.execute(
        """
UPDATE replays SET status = 'failed', error = 'cancelled' WHERE status = 'cancelled';
ALTER TABLE replays DROP CONSTRAINT replays_status_check;
ALTER TABLE replays ADD CONSTRAINT replays_status_check
    CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed'));
ALTER TABLE replays DROP COLUMN redrive_id;
DROP TABLE redrives;
"""
    )

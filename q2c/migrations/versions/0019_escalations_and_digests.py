"""Escalation steps and digest occurrences done, once each across replicas.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02

An escalation step (alerts.yaml `escalations`, by its place) is taken once per exception:
the pass that inserts its row (`ON CONFLICT DO NOTHING`) is the one that notifies, in the
same transaction as the notification it writes (alerts/escalation.py). A digest's
scheduled occurrence is sent once the same way (alerts/digest.py). Both name the
notification group whose notifications told it, so the log shows what was sent.
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE alert_escalations (
    exception_id   bigint NOT NULL,
    step           integer NOT NULL,  -- the escalation's place in alerts.yaml, from 1
    correlation_id text NOT NULL,
    group_id       bigint NOT NULL REFERENCES alert_groups (id),
    escalated_at   timestamptz NOT NULL,
    PRIMARY KEY (exception_id, step)
);

CREATE TABLE alert_digest_runs (
    digest     text NOT NULL,         -- its name in alerts.yaml
    occurrence timestamptz NOT NULL,  -- the scheduled time it was sent for
    group_id   bigint NOT NULL REFERENCES alert_groups (id),
    sent_at    timestamptz NOT NULL,
    PRIMARY KEY (digest, occurrence)
);
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP TABLE alert_digest_runs;
DROP TABLE alert_escalations;
"""
    )

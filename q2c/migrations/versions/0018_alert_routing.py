"""Alert routing: notification groups, their members, the notification log, silences.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02

The router (alerts/router.py) reads the outbox (`alert_events`) and files each event into
the groups of the routes it matches: one active group per route and `group_by` values
(Alertmanager's semantics), at most one at a time (`alert_groups_active_idx`). A group's
members are the exceptions (or SLOs) its events were about, so that its state follows
theirs: resolved once every one is closed, acknowledged once one is taken. When a group is
due (`next_flush_at`) the router writes one notification per channel of its route into
`alert_notifications`, which the deliverers (alerts/delivery.py) claim with a lease, as
the replay dispatcher claims replays (migration 0003): that table is also the log of what
was sent to whom, delivered, failed or suppressed and why. `alert_silences` are people's
silences; expiring one early records who and when, and a silence is never deleted.
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE alert_groups (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    route           text NOT NULL,   -- the route's identity: its place and its match
    group_key       jsonb NOT NULL,  -- the route's group_by keys and their values
    -- What every event of the group had in common (and the group key): what the message
    -- says and silences match.
    labels          jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'firing'
                        CHECK (state IN ('firing', 'acknowledged', 'resolved')),
    events          bigint NOT NULL DEFAULT 0,  -- routed into it, ever
    unsent_events   bigint NOT NULL DEFAULT 0,  -- routed since its last notification
    -- Its members, those still open and those of them acknowledged (assigned or in
    -- progress), as last read.
    members         integer NOT NULL DEFAULT 0,
    open_members    integer NOT NULL DEFAULT 0,
    acknowledged_members integer NOT NULL DEFAULT 0,
    first_event_id  bigint NOT NULL,
    last_event_id   bigint NOT NULL,
    first_event_at  timestamptz NOT NULL,
    last_event_at   timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    -- Its members' statuses changed (an assignment, a closing): the state is to be read
    -- again before the next notification is decided.
    stale           boolean NOT NULL DEFAULT false,
    next_flush_at   timestamptz,  -- NULL: nothing to tell until something changes
    flushes         integer NOT NULL DEFAULT 0,
    last_flushed_at timestamptz,
    told_state      text,  -- the state its last notification reported
    closed_at       timestamptz  -- told resolved: a later event opens a new group
);
CREATE UNIQUE INDEX alert_groups_active_idx ON alert_groups (route, group_key)
    WHERE closed_at IS NULL;
CREATE INDEX alert_groups_due_idx ON alert_groups (next_flush_at)
    WHERE next_flush_at IS NOT NULL;
CREATE INDEX alert_groups_stale_idx ON alert_groups (id) WHERE stale;

-- What a group is about, once each: an exception (its status decides the group's state),
-- an SLO (its alert state does), or nothing lasting (a failed replay, a digest).
CREATE TABLE alert_group_members (
    group_id       bigint NOT NULL REFERENCES alert_groups (id),
    subject        text NOT NULL,  -- 'exception:<id>', 'slo:<process>'
    correlation_id text,
    exception_id   bigint,
    process        text,  -- an SLO's
    PRIMARY KEY (group_id, subject)
);
CREATE INDEX alert_group_members_subject_idx ON alert_group_members (subject);

CREATE TABLE alert_notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id         bigint NOT NULL REFERENCES alert_groups (id),
    flush            integer NOT NULL,  -- the group's notification it is part of
    channel          text NOT NULL,
    state            text NOT NULL CHECK (state IN ('firing', 'acknowledged', 'resolved')),
    dedup_key        text NOT NULL,  -- the same for every notification of the group
    -- The message as rendered when the group was flushed: title, summary, counts, links,
    -- labels; every channel says it in its own protocol.
    message          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN (
                         'pending', 'delivering', 'delivered', 'failed', 'suppressed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    lease_until      timestamptz,
    last_attempt_at  timestamptz,
    finished_at      timestamptz,
    -- What the channel reported of the last attempt (the receiver's answer, or why
    -- nothing reached it), in words: for a failed or retrying one, why.
    outcome          text,
    suppressed_by    text,  -- the silence or maintenance window, by name
    created_at       timestamptz NOT NULL,
    UNIQUE (group_id, flush, channel)
);
CREATE INDEX alert_notifications_due_idx ON alert_notifications (channel, next_attempt_at)
    WHERE status IN ('pending', 'delivering');
CREATE INDEX alert_notifications_log_idx ON alert_notifications (created_at DESC, id DESC);

CREATE TABLE alert_silences (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    matchers   jsonb NOT NULL CHECK (jsonb_typeof(matchers) = 'object' AND matchers <> '{}'),
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL CHECK (ends_at > starts_at),
    reason     text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    author     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expired_by text,
    expired_at timestamptz,
    CHECK ((expired_by IS NULL) = (expired_at IS NULL))
);
CREATE INDEX alert_silences_ends_idx ON alert_silences (ends_at);
"""
    )


def downgrade() -> None:
    op.execute(
        """
DROP TABLE alert_silences;
DROP TABLE alert_notifications;
DROP TABLE alert_group_members;
DROP TABLE alert_groups;
"""
    )

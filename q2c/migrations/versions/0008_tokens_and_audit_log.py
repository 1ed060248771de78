"""Personal access tokens, and an audit log of the actions that concern no exception.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

A token is stored only as its SHA-256 (it carries 256 random bits, so a slow hash would add
nothing) with a short prefix to recognise it by in lists; one made with another token is
that token's child, so that a stolen token cannot outlive its revocation by making others.
`audit_log` records who did what beyond exceptions (sign-ins and their failures, token use,
user and token management), append-only like `exception_events`; failed sign-ins are
counted from it to rate-limit them.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username     text NOT NULL REFERENCES users (username) ON UPDATE CASCADE,
    name         text NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    prefix       text NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    revoked_by   text,
    -- made with another token: it expires no later, and is revoked with it
    parent_id    bigint REFERENCES api_tokens (id),
    CHECK (expires_at > created_at)
);
CREATE INDEX api_tokens_user_idx ON api_tokens (username);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    object_type text,
    object_id   text,
    token_id    bigint,
    client      text,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at);
CREATE INDEX audit_log_failed_sign_in_client_idx ON audit_log (client, at)
    WHERE action = 'sign_in.failed';

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION q2c_refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION q2c_refuse_change();
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE audit_log, api_tokens")

"""Personal access tokens: how the CLI authenticates a person.

A token is shown once, when it is created, and stored only as its SHA-256. Every use is
checked (unknown, expired, revoked, or its user disabled: refused) and audited with the
token's id. Users create and revoke their own tokens; admins those of anyone.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

from q2c.errors import Q2CError
from queries.audit import record
from queries.roles import UnknownUser, allows
from queries.users import User, acting_user

TOKEN_PREFIX = "q2c_pat_"  # recognisable by secret scanners and people
MAX_LIFETIME = timedelta(days=366)
DEFAULT_LIFETIME = timedelta(days=90)
_SHOWN_CHARS = len(TOKEN_PREFIX) + 4  # of a token, in lists


@dataclass(frozen=True)
class TokenInfo:
    """A token as lists show it: never the token itself."""

    id: int
    username: str
    name: str
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Authenticated:
    """The user a token stands for, and the token's id (for the audit trail)."""

    user: User
    token_id: int


def token_digest(token: str) -> bytes:
    """How a token (a personal access token or a console session's) is stored: its
    SHA-256 (it carries 256 random bits, so a slow hash would add nothing)."""
    return hashlib.sha256(token.encode()).digest()


def _may_manage(conn: Connection, actor: str, username: str) -> User:
    """The acting user, if they may manage `username`'s tokens (their own, or as admin)."""
    user = acting_user(conn, actor)
    if user.username != username and not allows(user.role, "users.manage"):
        raise Q2CError(f"only admins manage another user's tokens; {actor} is {user.role}")
    return user


def create_token(
    engine: Engine,
    actor: str,
    username: str,
    lifetime: timedelta = DEFAULT_LIFETIME,
    name: str = "",
    parent_id: int | None = None,
) -> tuple[str, TokenInfo]:
    """A new token for `username` valid for `lifetime`: (the token, shown this once; its
    info). `actor` is `username` or an admin. Made with the token `parent_id` (the CLI's),
    it expires no later than that one and is revoked with it."""
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise Q2CError("a token must expire, within 366 days")
    if len(name) > 100:
        raise Q2CError("a token's name has at most 100 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        user = _may_manage(conn, actor, username)
        acting_user(conn, username)  # the owner must exist and be enabled
        row = conn.execute(
            text(
                "INSERT INTO api_tokens (username, name, token_hash, prefix, created_by, "
                "expires_at, parent_id) SELECT :u, :n, :h, :p, :by, least(now() + :life, "
                "(SELECT expires_at FROM api_tokens WHERE id = :parent)), :parent RETURNING *"
            ),
            {
                "u": username,
                "n": name,
                "h": token_digest(token),
                "p": token[:_SHOWN_CHARS],
                "by": user.username,
                "life": lifetime,
                "parent": parent_id,
            },
        ).one()
        info = _info(row)
        record(
            conn,
            user.username,
            "token.created",
            object_type="user",
            object_id=username,
            token_id=info.id,
            detail={"expires_at": info.expires_at.isoformat()},
        )
    return token, info


def list_tokens(engine: Engine, actor: str, username: str | None = None) -> list[TokenInfo]:
    """`username`'s tokens (by default the actor's own), newest first."""
    with engine.connect() as conn:
        owner = username or acting_user(conn, actor).username
        _may_manage(conn, actor, owner)
        rows = conn.execute(
            text("SELECT * FROM api_tokens WHERE username = :u ORDER BY created_at DESC, id DESC"),
            {"u": owner},
        )
        return [_info(row) for row in rows]


def revoke_token(engine: Engine, actor: str, token_id: int) -> TokenInfo:
    """Revoke a token (the actor's own, or anyone's as admin), and the tokens made with it;
    revoking twice is refused."""
    with engine.begin() as conn:
        row = conn.execute(
            text(
                "SELECT username, name, prefix, revoked_at FROM api_tokens "
                "WHERE id = :id FOR UPDATE"
            ),
            {"id": token_id},
        ).one_or_none()
        if row is None:
            raise Q2CError(f"no token {token_id}")
        user = _may_manage(conn, actor, row.username)
        if row.revoked_at is not None:
            raise Q2CError(f"token {token_id} is already revoked")
        revoked = conn.execute(
            text(
                "WITH RECURSIVE made AS (SELECT CAST(:id AS bigint) AS id UNION "
                "SELECT t.id FROM api_tokens t JOIN made ON t.parent_id = made.id) "
                "UPDATE api_tokens SET revoked_at = now(), revoked_by = :by "
                "WHERE id IN (SELECT id FROM made) AND revoked_at IS NULL RETURNING *"
            ),
            {"id": token_id, "by": user.username},
        ).all()
        children = sorted(r.id for r in revoked if r.id != token_id)
        record(
            conn,
            user.username,
            "token.revoked",
            object_type="user",
            object_id=row.username,
            token_id=token_id,
            detail={"token": f"{row.name or '(no name)'} ({row.prefix}…)"}
            | ({"revoked_with_it": children} if children else {}),
        )
    return next(_info(r) for r in revoked if r.id == token_id)


def authenticate_token(engine: Engine, token: str, use: str) -> Authenticated:
    """The user `token` stands for, recording the use (`use`: what it was used for);
    UnknownUser when the token is unknown, expired or revoked or its user disabled."""
    with engine.begin() as conn:
        row = conn.execute(
            text(
                "UPDATE api_tokens SET last_used_at = now() WHERE token_hash = :h "
                "AND revoked_at IS NULL AND expires_at > now() RETURNING id, username"
            ),
            {"h": token_digest(token.strip())},
        ).one_or_none()
        if row is None:
            raise UnknownUser("the token is unknown, expired or revoked")
        user = acting_user(conn, row.username)
        record(conn, user.username, "token.used", token_id=row.id, detail={"use": use})
    return Authenticated(user, row.id)


def _info(row) -> TokenInfo:
    return TokenInfo(
        row.id,
        row.username,
        row.name,
        row.prefix,
        row.created_by,
        row.created_at,
        row.expires_at,
        row.last_used_at,
        row.revoked_at,
    )

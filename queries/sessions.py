"""Console sessions: a sign-in that survives a reload or a new tab.

The session's token (256 random bits) is given to the browser once, for a cookie, and
stored only as its SHA-256. A session is good while it is open, unexpired, and its user
enabled and of the role it was opened with; signing out closes it. Opening and closing
are audited; resuming is a use of the sign-in, not a new one.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import Connection, Engine, text

from queries.audit import record
from queries.tokens import token_digest
from queries.users import User

SESSION_PREFIX = "q2c_ses_"


def open_session(engine: Engine, user: User, lifetime: timedelta, client: str | None) -> str:
    """A new session for `user` (just signed in) lasting `lifetime`: its token."""
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO console_sessions (token_hash, username, role, expires_at) "
                "VALUES (:h, :u, :r, now() + :lifetime)"
            ),
            {"h": token_digest(token), "u": user.username, "r": user.role, "lifetime": lifetime},
        )
        record(
            conn,
            user.username,
            "session.opened",
            object_type="user",
            object_id=user.username,
            client=client,
        )
    return token


def resume_session(engine: Engine, token: str) -> User | None:
    """The user of the session `token` if it is still good, else None."""
    if not token.startswith(SESSION_PREFIX):
        return None
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT u.username, u.role, u.display_name, u.disabled FROM console_sessions s "
                "JOIN users u ON u.username = s.username "
                "WHERE s.token_hash = :h AND s.closed_at IS NULL AND s.expires_at > now() "
                "AND NOT u.disabled AND u.role = s.role"
            ),
            {"h": token_digest(token)},
        ).one_or_none()
    return None if row is None else User(*row)


def close_session(engine: Engine, token: str, client: str | None) -> None:
    """Sign out: the session `token` is good no more."""
    with engine.begin() as conn:
        username = conn.execute(
            text(
                "UPDATE console_sessions SET closed_at = now() "
                "WHERE token_hash = :h AND closed_at IS NULL RETURNING username"
            ),
            {"h": token_digest(token)},
        ).scalar_one_or_none()
        if username is not None:
            record(
                conn,
                username,
                "session.closed",
                object_type="user",
                object_id=username,
                client=client,
            )


def end_sessions(conn: Connection, username: str) -> int:
    """Close every open session of `username` in the caller's transaction (their role
    changed, they were disabled or their password was reset): how many were open."""
    closed = conn.execute(
        text(
            "UPDATE console_sessions SET closed_at = now() "
            "WHERE username = :u AND closed_at IS NULL"
        ),
        {"u": username},
    )
    return closed.rowcount

"""Admins' commands on console users: add, change role, disable and enable, reset a
password, set the display name and e-mail. Each is role-checked and audited in the
transaction of the change; disabling a user or resetting their password also ends their
console sessions (a stolen session dies with the password)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, text

from q2c.errors import Q2CError
from queries.audit import record
from queries.sessions import end_sessions
from queries.users import PASSWORDS, User, allowed_user, check_password, check_role, insert_user


def add_user(
    engine: Engine, actor: str, username: str, role: str, password: str, display_name: str = ""
) -> User:
    """Create a user on behalf of `actor`; admins only, audited."""
    check_role(role)
    check_password(password)
    with engine.begin() as conn:
        allowed_user(conn, actor, "users.manage")
        insert_user(conn, username, role, password, display_name)
        record(
            conn,
            actor,
            "user.created",
            object_type="user",
            object_id=username,
            detail={"role": role},
        )
    return User(username, role, display_name or username)


def set_role(engine: Engine, actor: str, username: str, role: str) -> User:
    """Change a user's role; admins only, audited. The user's console sessions end (they
    were opened for the old role), and the last enabled admin stays an admin."""
    check_role(role)
    with engine.begin() as conn:
        return _change(conn, actor, username, "user.role_changed", {"role": role})


def set_disabled(engine: Engine, actor: str, username: str, disabled: bool) -> User:
    """Disable a user (they can no longer sign in or use their tokens; their sessions end)
    or enable them again; admins only, audited. Nobody disables themselves, and the last
    enabled admin stays enabled."""
    if disabled and username == actor:
        raise Q2CError("you cannot disable yourself (ask another admin)")
    with engine.begin() as conn:
        action = "user.disabled" if disabled else "user.enabled"
        return _change(conn, actor, username, action, {"disabled": disabled})


def reset_password(engine: Engine, actor: str, username: str, password: str) -> User:
    """Give a user a new password; admins only, audited (never the password). Their
    console sessions end: whoever held the old password is signed out."""
    check_password(password)
    with engine.begin() as conn:
        user = _change(conn, actor, username, "user.password_reset", {})
        conn.execute(
            text("UPDATE users SET password_hash = :h WHERE username = :u"),
            {"u": username, "h": PASSWORDS.hash(password)},
        )
        return user


def set_profile(
    engine: Engine, actor: str, username: str, display_name: str, email: str | None
) -> User:
    """Set a user's display name and e-mail (the one single sign-on matches); admins only,
    audited with both values before and after."""
    display_name = display_name.strip()
    email = (email or "").strip() or None
    if len(display_name) > MAX_DISPLAY_NAME or not display_name.isprintable():
        raise Q2CError(f"a display name is printable text of at most {MAX_DISPLAY_NAME} characters")
    if email is not None and not _EMAIL.fullmatch(email):
        raise Q2CError(f"'{email}' is not an e-mail address")
    with engine.begin() as conn:
        changes = {"display_name": display_name or username, "email": email}
        return _change(conn, actor, username, "user.profile_changed", changes)


def list_users(engine: Engine, actor: str) -> list[User]:
    """Every user; admins only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "users.manage")
        rows = conn.execute(text(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username"))
        return [User(*row) for row in rows]


MAX_DISPLAY_NAME = 100
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s.]{1,60}")
_USER_COLUMNS = "username, role, display_name, disabled, coalesce(email, '') AS email"
# Changes that end the user's console sessions: they sign in again as what they are now.
_ENDS_SESSIONS = ("user.role_changed", "user.disabled", "user.password_reset")


def _change(
    conn: Connection, actor: str, username: str, action: str, changes: Mapping[str, object]
) -> User:
    """Apply `changes` (columns of `users`) to `username` for an admin `actor`, locked and
    audited with the values before and after; never leaves no enabled admin."""
    allowed_user(conn, actor, "users.manage")
    # Every admin row locked, in one order: two admins demoting each other at once cannot
    # both pass the last-admin check.
    rows = conn.execute(
        text(
            f"SELECT {_USER_COLUMNS} FROM users WHERE username = :u OR role = 'admin' "
            "ORDER BY username FOR UPDATE"
        ),
        {"u": username},
    ).all()
    users = {row.username: row for row in rows}
    if username not in users:
        raise Q2CError(f"no user '{username}'")
    before = {key: getattr(users[username], key) for key in changes}
    after: dict[str, Any] = {**users[username]._mapping, **changes}

    def now(name: str) -> Mapping[str, Any]:
        return after if name == username else dict(users[name]._mapping)

    if not any(now(name)["role"] == "admin" and not now(name)["disabled"] for name in users):
        raise Q2CError(f"'{username}' is the last enabled admin: make another admin first")
    if changes:
        assignments = ", ".join(f"{key} = :{key}" for key in changes)
        conn.execute(
            text(f"UPDATE users SET {assignments}, updated_at = now() WHERE username = :u"),
            {**changes, "u": username},
        )
    if action in _ENDS_SESSIONS:
        end_sessions(conn, username)
    record(
        conn,
        actor,
        action,
        object_type="user",
        object_id=username,
        detail={"before": before, "after": changes} if changes else None,
    )
    return User(
        after["username"],
        after["role"],
        after["display_name"],
        after["disabled"],
        after["email"] or "",
    )

"""Console users: commands to add them and change roles (admins only), password checks,
and the lookup every other command starts with."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from q2c.errors import Q2CError
from queries.roles import ROLES, UnknownUser, require

_HASHER = PasswordHasher()
MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True)
class User:
    """A console user as commands see it."""

    username: str
    role: str
    display_name: str = ""
    disabled: bool = False


def acting_user(conn: Connection, username: str) -> User:
    """The enabled user `username`, read inside the caller's transaction; else UnknownUser."""
    row = conn.execute(
        text("SELECT username, role, display_name, disabled FROM users WHERE username = :u"),
        {"u": username},
    ).one_or_none()
    if row is None or row.disabled:
        raise UnknownUser(f"unknown or disabled user '{username}'")
    return User(row.username, row.role, row.display_name, row.disabled)


def allowed_user(conn: Connection, username: str, permission: str) -> User:
    """The enabled user `username` if allowed `permission`, read inside the caller's
    transaction; else UnknownUser / PermissionDenied."""
    user = acting_user(conn, username)
    require(user.username, user.role, permission)
    return user


def authorize(engine: Engine, username: str, permission: str) -> User:
    """`allowed_user` on a connection of its own."""
    with engine.connect() as conn:
        return allowed_user(conn, username, permission)


def any_admin(engine: Engine) -> bool:
    """Whether an enabled admin exists (before that, `q2c users add` bootstraps one)."""
    with engine.connect() as conn:
        return bool(conn.execute(
            text("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND NOT disabled)")
        ).scalar())  # fmt: skip


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise Q2CError(f"unknown role '{role}' (choose one of {', '.join(ROLES)})")


def create_user(
    engine: Engine, username: str, role: str, password: str, display_name: str = ""
) -> User:
    """Create a user without checking who asks: for `q2c users add` run by the operator of
    the installation (who owns the database) and for seeding the demo."""
    _check_role(role)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Q2CError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (username, display_name, role, password_hash) "
                    "VALUES (:u, :d, :r, :h)"
                ),
                {
                    "u": username,
                    "d": display_name or username,
                    "r": role,
                    "h": _HASHER.hash(password),
                },
            )
    except IntegrityError as exc:
        if "users_pkey" in str(exc.orig):
            raise Q2CError(f"user '{username}' already exists") from None
        raise Q2CError(
            f"'{username}' is not a valid user name (letters, digits, . _ @ -)"
        ) from None
    return User(username, role, display_name or username)


def add_user(engine: Engine, actor: str, username: str, role: str, password: str,
             display_name: str = "") -> User:  # fmt: skip
    """Create a user on behalf of `actor`; admins only."""
    authorize(engine, actor, "users.manage")
    return create_user(engine, username, role, password, display_name)


def set_role(engine: Engine, actor: str, username: str, role: str) -> User:
    """Change a user's role; admins only."""
    _check_role(role)
    with engine.begin() as conn:
        allowed_user(conn, actor, "users.manage")
        row = conn.execute(
            text(
                "UPDATE users SET role = :r, updated_at = now() WHERE username = :u "
                "RETURNING username, role, display_name, disabled"
            ),
            {"u": username, "r": role},
        ).one_or_none()
    if row is None:
        raise Q2CError(f"no user '{username}'")
    return User(*row)


def list_users(engine: Engine, actor: str) -> list[User]:
    """Every user; admins only."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "users.manage")
        rows = conn.execute(
            text("SELECT username, role, display_name, disabled FROM users ORDER BY username")
        )
        return [User(*row) for row in rows]


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    """The user if the password matches, else None (unknown users cost the same time)."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT username, role, display_name, disabled, password_hash FROM users "
                "WHERE username = :u"
            ),
            {"u": username},
        ).one_or_none()
    stored = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled:
        return None
    return User(row.username, row.role, row.display_name, row.disabled)


_DUMMY_HASH = _HASHER.hash("not a real password; equalises timing")

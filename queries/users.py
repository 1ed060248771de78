"""Console users: the record every command starts with (lookup, role check), and making
one (the demo's seed, the first admin). Admins' commands are in queries.user_admin,
signing in in queries.sign_in."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from q2c.errors import Q2CError
from q2c.vocabulary import ROLES
from queries.audit import record
from queries.roles import UnknownUser, require

PASSWORDS = PasswordHasher()  # argon2id with the library's parameters
MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True)
class User:
    """A console user as commands see it."""

    username: str
    role: str
    display_name: str = ""
    disabled: bool = False
    email: str = ""


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


def lookup_user(engine: Engine, username: str) -> User:
    """The enabled user `username` as the database holds it now; else UnknownUser."""
    with engine.connect() as conn:
        return acting_user(conn, username)


def assignable_users(engine: Engine, actor: str) -> list[str]:
    """Who exceptions may be assigned to (every enabled user who may act on them), for a
    user who may assign."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "exceptions.act")
        rows = conn.execute(
            text(
                "SELECT username FROM users WHERE role <> 'viewer' AND NOT disabled "
                "ORDER BY username"
            )
        )
        return [username for (username,) in rows]


def authorize(engine: Engine, username: str, permission: str) -> User:
    """`allowed_user` on a connection of its own."""
    with engine.connect() as conn:
        return allowed_user(conn, username, permission)


_ANY_ADMIN = text("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND NOT disabled)")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise Q2CError(f"unknown role '{role}' (choose one of {', '.join(ROLES)})")


def create_user(
    engine: Engine, username: str, role: str, password: str, display_name: str = ""
) -> User:
    """Create a user without checking who asks: for seeding the demo and for commands that
    checked already (`add_user`)."""
    check_role(role)
    check_password(password)
    with engine.begin() as conn:
        insert_user(conn, username, role, password, display_name)
    return User(username, role, display_name or username)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Q2CError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")


def insert_user(
    conn: Connection, username: str, role: str, password: str, display_name: str
) -> None:
    try:
        with conn.begin_nested():
            conn.execute(
                text(
                    "INSERT INTO users (username, display_name, role, password_hash) "
                    "VALUES (:u, :d, :r, :h)"
                ),
                {
                    "u": username,
                    "d": display_name or username,
                    "r": role,
                    "h": PASSWORDS.hash(password),
                },
            )
    except IntegrityError as exc:
        if "users_pkey" in str(exc.orig):
            raise Q2CError(f"user '{username}' already exists") from None
        raise Q2CError(
            f"'{username}' is not a valid user name (letters, digits, . _ @ -)"
        ) from None


def bootstrap_admin(
    engine: Engine, username: str, role: str, password: str, display_name: str = ""
) -> User:
    """Create the first admin, only while no enabled admin exists (two at once: one wins).
    `engine` must connect as the schema's owner: whoever can, owns the installation."""
    if role != "admin":
        raise Q2CError("no admin exists yet: create the first user with --role admin")
    check_password(password)
    with engine.begin() as conn:
        conn.execute(text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"))
        if conn.execute(_ANY_ADMIN).scalar():
            raise Q2CError(
                "an admin exists already: adding users needs an admin's personal access token "
                "(--token or Q2C_TOKEN)"
            )
        insert_user(conn, username, role, password, display_name)
        record(
            conn,
            "bootstrap",
            "user.created",
            object_type="user",
            object_id=username,
            detail={"role": role, "first_admin": True},
        )
    return User(username, role, display_name or username)

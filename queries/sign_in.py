"""Signing in to the console: passwords (rate-limited per user name and per client
address) and single sign-on, each attempt audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, text

from queries.audit import record
from queries.users import PASSWORDS, User

# Failed sign-ins allowed within the window, per user name and per client address; past
# them, sign-ins are refused until the oldest counted failure leaves the window.
SIGN_IN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_CLIENT = 20


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: the user, or None; `retry_after` when refused because of
    too many failed attempts (the password was then not even checked)."""

    user: User | None
    retry_after: timedelta | None = None


def sign_in(engine: Engine, username: str, password: str, client: str | None) -> SignIn:
    """Check a password sign-in from `client` (its address, if known), rate-limited and
    audited: success, failure and refusal each leave a row in the audit log."""
    with engine.begin() as conn:
        # One attempt per user name and per address at a time, so that parallel guesses
        # cannot slip past the counts (always the name first: no two attempts wait on each
        # other in opposite order).
        for kind, value in (("user", username), ("client", client)):
            if value is not None:
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                    {"key": f"q2c-sign-in:{kind}:{value}"},
                )
        wait = _lockout(conn, username, client)
        if wait is not None:
            record(
                conn,
                username,
                "sign_in.refused",
                client=client,
                detail={"retry_after_seconds": round(wait.total_seconds())},
            )
            return SignIn(None, wait)
        user = _verified(conn, username, password)
        record(conn, username, "sign_in" if user else "sign_in.failed", client=client)
    return SignIn(user)


def sso_sign_in(engine: Engine, email: str, client: str | None) -> User | None:
    """The enabled user whose e-mail an identity provider vouched for, or None; audited."""
    with engine.begin() as conn:
        row = conn.execute(
            text(
                "SELECT username, role, display_name, disabled FROM users "
                "WHERE lower(email) = lower(:e) AND NOT disabled"
            ),
            {"e": email},
        ).one_or_none()
        user = None if row is None else User(*row)
        record(
            conn,
            user.username if user else email,
            "sign_in" if user else "sign_in.failed",
            client=client,
            detail={"method": "sso", "email": email},
        )
    return user


def _lockout(conn: Connection, username: str, client: str | None) -> timedelta | None:
    """How long sign-ins of `username` (or from `client`) stay refused, or None."""
    waits = []
    for column, value, limit in (
        ("actor", username, MAX_FAILURES_PER_USER),
        ("client", client, MAX_FAILURES_PER_CLIENT),
    ):
        if value is None:
            continue
        # A user's own success resets their count; an address's count only ages (else one
        # good account would reset it between guesses at others).
        since = (
            "coalesce((SELECT max(at) FROM audit_log WHERE action = 'sign_in' AND actor = :v), "
            "'-infinity')"
            if column == "actor"
            else "'-infinity'"
        )
        # Counted failures, newest first: the limit-th is the one that has to age out.
        oldest = conn.execute(
            text(
                f"SELECT at + :window - now() FROM audit_log WHERE action = 'sign_in.failed' "
                f"AND {column} = :v AND at > now() - :window AND at > {since} "
                "ORDER BY at DESC OFFSET :skip LIMIT 1"
            ),
            {"v": value, "window": SIGN_IN_WINDOW, "skip": limit - 1},
        ).scalar_one_or_none()
        if oldest is not None and oldest > timedelta(0):
            waits.append(oldest)
    return max(waits) if waits else None


def _verified(conn: Connection, username: str, password: str) -> User | None:
    """The enabled user if the password matches, else None (unknown users cost the same)."""
    row = conn.execute(
        text(
            "SELECT username, role, display_name, disabled, password_hash FROM users "
            "WHERE username = :u"
        ),
        {"u": username},
    ).one_or_none()
    stored = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH
    try:
        PASSWORDS.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled:
        return None
    return User(row.username, row.role, row.display_name, row.disabled)


_DUMMY_HASH = PASSWORDS.hash("not a real password; equalises timing")

"""Password sign-ins are rate-limited per user name and per client address, and every
success, failure and refusal is audited."""

from __future__ import annotations

import psycopg
from sqlalchemy import Engine

from queries.sign_in import (
    MAX_FAILURES_PER_CLIENT,
    MAX_FAILURES_PER_USER,
    SIGN_IN_WINDOW,
    sign_in,
    sso_sign_in,
)
from queries.users import create_user

PASSWORD = "correct horse battery"


def test_a_user_name_is_locked_after_repeated_failures_until_they_age_out(
    engine: Engine, owner_db: psycopg.Connection
) -> None:
    db = owner_db
    create_user(engine, "fin", "finance_ops", PASSWORD)
    failures = [sign_in(engine, "fin", "wrong", "10.0.0.1") for _ in range(MAX_FAILURES_PER_USER)]
    locked = sign_in(engine, "fin", PASSWORD, "10.0.0.2")  # right password, other address
    # The failures age out: moved back in time as if the window had passed (a trigger keeps
    # the audit log append-only, so the owner lifts it for this one statement).
    db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
    db.execute("UPDATE audit_log SET at = at - %s", (SIGN_IN_WINDOW,))
    db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    later = sign_in(engine, "fin", PASSWORD, "10.0.0.2")

    assert all(f.user is None and f.retry_after is None for f in failures)
    assert locked.user is None and locked.retry_after is not None
    assert SIGN_IN_WINDOW * 0.9 < locked.retry_after <= SIGN_IN_WINDOW
    assert later.user is not None


def test_a_success_resets_the_users_count(engine: Engine) -> None:
    create_user(engine, "fin", "finance_ops", PASSWORD)
    for _ in range(MAX_FAILURES_PER_USER - 1):
        sign_in(engine, "fin", "wrong", None)
    assert sign_in(engine, "fin", PASSWORD, None).user is not None

    again = [sign_in(engine, "fin", "wrong", None) for _ in range(MAX_FAILURES_PER_USER - 1)]

    assert all(attempt.retry_after is None for attempt in again)
    assert sign_in(engine, "fin", PASSWORD, None).user is not None


def test_one_address_guessing_at_many_names_is_locked(engine: Engine) -> None:
    create_user(engine, "ops", "oncall", PASSWORD)
    for n in range(MAX_FAILURES_PER_CLIENT):
        sign_in(engine, f"someone{n}", "guess", "203.0.113.9")

    from_there = sign_in(engine, "ops", PASSWORD, "203.0.113.9")
    elsewhere = sign_in(engine, "ops", PASSWORD, "198.51.100.7")

    assert from_there.user is None and from_there.retry_after is not None
    assert elsewhere.user is not None


def test_sign_ins_are_audited_with_the_client_address(
    engine: Engine, db: psycopg.Connection
) -> None:
    create_user(engine, "ops", "oncall", PASSWORD)
    sign_in(engine, "ops", "wrong", "198.51.100.7")
    sign_in(engine, "ops", PASSWORD, "198.51.100.7")
    sign_in(engine, "nobody", PASSWORD, "198.51.100.8")

    assert db.execute("SELECT actor, action, client FROM audit_log ORDER BY id").fetchall() == [
        ("ops", "sign_in.failed", "198.51.100.7"),
        ("ops", "sign_in", "198.51.100.7"),
        ("nobody", "sign_in.failed", "198.51.100.8"),
    ]


def test_single_sign_on_is_audited_too(engine: Engine, db: psycopg.Connection) -> None:
    create_user(engine, "ops", "oncall", PASSWORD)
    db.execute("UPDATE users SET email = 'ops@example.com' WHERE username = 'ops'")

    known = sso_sign_in(engine, "OPS@example.com", "198.51.100.7")
    unknown = sso_sign_in(engine, "eve@example.com", "198.51.100.8")

    assert known is not None and known.username == "ops" and unknown is None
    assert db.execute(
        "SELECT actor, action, detail->>'method' FROM audit_log ORDER BY id"
    ).fetchall() == [
        ("ops", "sign_in", "sso"),
        ("eve@example.com", "sign_in.failed", "sso"),
    ]

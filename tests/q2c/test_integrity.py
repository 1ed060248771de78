"""The database itself guards the audit trail and the one-open/one-active rules: its
triggers refuse changes even to the owner, and the runtime role may not touch them."""

from __future__ import annotations

import psycopg
import pytest


@pytest.fixture
def exception_id(db: psycopg.Connection) -> int:
    db.execute("INSERT INTO users (username, role) VALUES ('fin', 'finance_ops')")
    (exc_id,) = db.execute(
        "INSERT INTO exceptions (correlation_id, process, stage, system, fingerprint, "
        "first_seen, last_seen) VALUES ('inv-7', 'invoice_posting', 'invoice_recorded', "
        "'erp', 'fp1', now(), now()) RETURNING id"
    ).fetchone()
    db.execute(
        "INSERT INTO exception_events (correlation_id, exception_id, actor, action, comment) "
        "VALUES ('inv-7', %s, 'fin', 'commented', 'looking into it')",
        (exc_id,),
    )
    return exc_id


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE exception_events SET comment = 'rewritten'",
        "DELETE FROM exception_events",
        "TRUNCATE exception_events",
    ],
)
def test_audit_trail_refuses_changes_even_by_its_owner(
    owner_db: psycopg.Connection, exception_id: int, statement: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        owner_db.execute(statement)

    assert owner_db.execute("SELECT comment FROM exception_events").fetchall() == [
        ("looking into it",)
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE exception_events SET comment = 'rewritten'",
        "DELETE FROM exception_events",
        "TRUNCATE exception_events",
        "ALTER TABLE exception_events DISABLE TRIGGER USER",
        "ALTER TABLE exception_events DISABLE TRIGGER exception_events_append_only",
        "DROP TRIGGER exception_events_append_only ON exception_events",
        "DROP TABLE exception_events",
        "ALTER FUNCTION q2c_refuse_change() RENAME TO q2c_allow",
        "CREATE OR REPLACE FUNCTION q2c_refuse_change() RETURNS trigger LANGUAGE plpgsql AS "
        "'BEGIN RETURN NEW; END'",
    ],
)
def test_the_runtime_role_can_neither_change_nor_unguard_the_audit_trail(
    db: psycopg.Connection, exception_id: int, statement: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute(statement)

    assert db.execute("SELECT comment FROM exception_events").fetchall() == [("looking into it",)]
    triggers = db.execute(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'exception_events'::regclass "
        "AND NOT tgisinternal ORDER BY tgname"
    ).fetchall()
    assert triggers == [
        ("exception_events_append_only", "O"),
        ("exception_events_no_truncate", "O"),
    ]


def test_one_open_exception_per_transaction_stage_and_fingerprint(
    db: psycopg.Connection, exception_id: int
) -> None:
    duplicate = (
        "INSERT INTO exceptions (correlation_id, stage, fingerprint, first_seen, last_seen) "
        "VALUES ('inv-7', 'invoice_recorded', 'fp1', now(), now())"
    )
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(duplicate)

    db.execute("UPDATE exceptions SET status = 'resolved' WHERE id = %s", (exception_id,))
    db.execute(duplicate)
    assert db.execute("SELECT count(*) FROM exceptions").fetchone() == (2,)


def test_one_active_replay_per_dead_letter(db: psycopg.Connection) -> None:
    db.execute("INSERT INTO users (username, role) VALUES ('ops', 'oncall')")
    (dl_id,) = db.execute(
        "INSERT INTO dead_letters (correlation_id, dedup_key, idempotency_key, occurred_at) "
        "VALUES ('inv-7', '\\x01', 'dl-inv-7-1', now()) RETURNING id"
    ).fetchone()
    request = (
        "INSERT INTO replays (correlation_id, dead_letter_id, requested_by, idempotency_key) "
        "VALUES ('inv-7', %s, 'ops', 'dl-inv-7-1')"
    )
    db.execute(request, (dl_id,))

    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(request, (dl_id,))

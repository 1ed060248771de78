"""Each word is spelled once: the database's function for "open" and its CHECK constraints
say what q2c.vocabulary says."""

from __future__ import annotations

import re

import psycopg

from q2c import vocabulary


def _checked(db: psycopg.Connection, table: str, column: str) -> set[str]:
    """The values a CHECK constraint of `table` allows for `column`."""
    definitions = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'c'",
        (table,),
    ).fetchall()
    for (definition,) in definitions:
        if f"({column} = ANY" in definition or f"{column} IN" in definition:
            return set(re.findall(r"'(\w+)'", definition))
    raise AssertionError(f"no CHECK on {table}.{column}")


def test_the_open_function_and_the_constraints_match_the_vocabulary(
    db: psycopg.Connection,
) -> None:
    is_open = {
        status
        for status in vocabulary.EXCEPTION_STATUSES
        if db.execute("SELECT q2c_is_open(%s)", (status,)).fetchone()[0]
    }

    assert is_open == set(vocabulary.OPEN_STATUSES)
    assert set(vocabulary.OPEN_STATUSES) | set(vocabulary.CLOSED_STATUSES) == set(
        vocabulary.EXCEPTION_STATUSES
    )
    assert _checked(db, "exceptions", "status") == set(vocabulary.EXCEPTION_STATUSES)
    assert _checked(db, "exceptions", "kind") == set(vocabulary.EXCEPTION_KINDS)
    assert _checked(db, "exceptions", "impact") == set(vocabulary.IMPACTS)
    assert _checked(db, "users", "role") == set(vocabulary.ROLES)
    assert _checked(db, "dead_letters", "status") == set(vocabulary.DEAD_LETTER_STATUSES)
    assert _checked(db, "replays", "status") == set(vocabulary.REPLAY_STATUSES)


def test_every_transition_ends_in_a_known_status() -> None:
    for starts_from, status in vocabulary.TRANSITIONS.values():
        assert set(starts_from) <= set(vocabulary.EXCEPTION_STATUSES)
        assert status is None or status in vocabulary.EXCEPTION_STATUSES

"""Least privilege: `q2c migrate` grants the runtime role exactly the declared privileges on
every table, the product works as that role, and a process that connects as an owner or
superuser says so once at start-up."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from cli.main import main
from q2c.privileges import RUNTIME_GRANTS, privilege_warning


def test_every_table_has_declared_runtime_privileges(db: psycopg.Connection) -> None:
    tables = {
        name
        for (name,) in db.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE nspname = current_schema() AND relkind IN ('r', 'p') AND NOT relispartition"
        )
    }
    granted = {
        (table, privilege)
        for table, privilege in db.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = current_user"
        )
    }

    assert tables <= set(RUNTIME_GRANTS)
    for table in tables:
        expected = {p.strip() for p in RUNTIME_GRANTS[table].split(",")}
        assert {p for t, p in granted if t == table} == expected, table
    assert ("exception_events", "UPDATE") not in granted


def test_the_runtime_role_owns_nothing_and_cannot_create_tables(db: psycopg.Connection) -> None:
    owned = db.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
        "WHERE r.rolname = current_user AND c.relpersistence <> 't'"
    ).fetchone()

    assert owned == (0,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("CREATE TABLE mine (v int)")


def test_an_owner_or_superuser_connection_is_warned_about(db_url: str, owner_db_url: str) -> None:
    warning = privilege_warning(owner_db_url)

    assert warning is not None and "could alter or switch off the audit trail" in warning
    assert privilege_warning(db_url) is None


def test_the_cli_warns_once_when_it_connects_as_the_owner(
    owner_db_url: str, db_url: str, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    def warnings(url: str) -> list[str]:
        caplog.clear()
        monkeypatch.setenv("DATABASE_URL", url)
        for _ in range(2):
            assert CliRunner().invoke(main, ["replay", "run-once"]).exit_code == 0
        return [r.getMessage() for r in caplog.records if r.name == "q2c.privileges"]

    as_owner, as_runtime = warnings(owner_db_url), warnings(db_url)

    assert len(as_owner) == 1 and "could alter or switch off the audit trail" in as_owner[0]
    assert as_runtime == []


def test_migrate_creates_and_grants_the_runtime_role(
    empty_db: str, pg_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = "q2c_test_migrate_role"
    monkeypatch.setenv("DATABASE_URL", empty_db)
    monkeypatch.setenv("Q2C_APP_ROLE", role)
    try:
        result = CliRunner().invoke(main, ["migrate"])
        with psycopg.connect(empty_db) as conn:
            can_insert = conn.execute(
                "SELECT has_table_privilege(%s, 'spans', 'INSERT'), "
                "has_table_privilege(%s, 'exception_events', 'UPDATE')",
                (role, role),
            ).fetchone()
    finally:
        with psycopg.connect(empty_db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))

    assert result.exit_code == 0, result.output
    assert f"runtime role {role} granted its privileges" in result.output
    assert can_insert == (True, False)

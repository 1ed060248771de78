"""The operator CLI acts as a named user, refuses by role with the role needed, and audits
exactly like the console."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

from q2c.cli import main
from tests.replay.conftest import PASSWORD


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("Q2C_REPLAY_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.delenv("Q2C_USER", raising=False)

    def run(*args: str, input: str | None = None):
        return CliRunner().invoke(main, list(args), input=input)

    return run


def test_the_first_admin_bootstraps_then_only_admins_add_users(cli, db: psycopg.Connection) -> None:
    refused_first = cli(
        "users", "add", "fin", "--role", "finance_ops", "--password-stdin", input=PASSWORD + "\n"
    )
    admin = cli("users", "add", "ada", "--role", "admin", "--password-stdin", input=PASSWORD + "\n")
    anonymous = cli(
        "users", "add", "fin", "--role", "finance_ops", "--password-stdin", input=PASSWORD + "\n"
    )
    added = cli(
        "users",
        "add",
        "fin",
        "--role",
        "finance_ops",
        "--as",
        "ada",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    by_fin = cli("users", "set-role", "fin", "admin", "--as", "fin")
    listing = cli("users", "list", "--as", "ada", "--json")

    assert (
        refused_first.exit_code == 1
        and "create the first user with --role admin" in refused_first.output
    )
    assert admin.exit_code == 0 and "created ada (admin)" in admin.output
    assert anonymous.exit_code == 1 and "needs --as ADMIN" in anonymous.output
    assert added.exit_code == 0
    assert by_fin.exit_code == 1
    assert "managing users needs the admin role or higher; fin is finance_ops" in by_fin.output
    assert [(u["username"], u["role"]) for u in json.loads(listing.output)] == [
        ("ada", "admin"),
        ("fin", "finance_ops"),
    ]
    stored = db.execute("SELECT password_hash FROM users WHERE username = 'fin'").fetchone()[0]
    assert stored.startswith("$argon2") and PASSWORD not in stored


def test_exception_commands_check_roles_and_write_the_audit_trail(
    cli, users, dead_letters, db: psycopg.Connection
) -> None:
    dead_letters(2)
    ids = [str(i) for (i,) in db.execute("SELECT id FROM exceptions ORDER BY id").fetchall()]

    viewer = cli("exceptions", "list", "--as", "cio")
    listed = cli("exceptions", "list", "--as", "fin", "--json")
    assigned = cli("exceptions", "assign", *ids, "--to", "fin", "--as", "fin")
    commented = cli("exceptions", "comment", ids[0], "calling the ERP team", "--as", "fin")
    resolved = cli("exceptions", "resolve", ids[0], "--reason", "posted manually", "--as", "fin")
    again = cli("exceptions", "resolve", ids[0], "--reason", "twice", "--as", "fin")
    shown = cli("exceptions", "show", ids[0], "--as", "fin", "--json")

    assert (
        viewer.exit_code == 1 and "viewing exceptions needs the finance_ops role" in viewer.output
    )
    assert {row["correlation_id"] for row in json.loads(listed.output)} == {"INV-R0", "INV-R1"}
    assert assigned.exit_code == 0 and "assigned to fin: 2 exception(s)" in assigned.output
    assert commented.exit_code == 0 and resolved.exit_code == 0
    assert again.exit_code == 2 and f"skipped {ids[0]}: already resolved" in again.output
    detail = json.loads(shown.output)
    assert [o["failures"] for o in detail["occurrences"]] == [1]
    history = detail["history"]
    assert [(h["actor"], h["action"]) for h in history] == [
        ("fin", "assigned"),
        ("fin", "commented"),
        ("fin", "resolved"),
    ]
    assert history[0]["before"] == {"owner": None, "status": "open"}
    assert history[0]["after"] == {"owner": "fin", "status": "assigned"}
    assert db.execute(
        "SELECT status, owner, resolution FROM exceptions WHERE id = %s", (int(ids[0]),)
    ).fetchone() == ("resolved", "fin", "posted manually")


def test_replay_commands_refuse_finance_ops_and_serve_on_call(
    cli, users, dead_letters, targets, db: psycopg.Connection
) -> None:
    letters = [str(i) for i in dead_letters(2)]

    refused = cli("replay", "request", *letters, "--as", "fin")
    listed = cli("dead-letters", "list", "--as", "ops", "--json")
    requested = cli("replay", "request", "--filter", "INV-R", "--as", "ops")
    delivered = cli("replay", "run-once")
    status = cli("replay", "status", "--as", "ops", "--json")

    assert refused.exit_code == 1 and "requesting replays needs the oncall role" in refused.output
    assert len(json.loads(listed.output)) == 2
    assert requested.exit_code == 0 and requested.output.count("queued") == 2
    assert "claimed 2: 2 succeeded" in delivered.output
    assert {row["status"] for row in json.loads(status.output)} == {"succeeded"}
    assert len(targets[0].applied) == 2


def test_an_unknown_acting_user_is_refused(cli, users) -> None:
    result = cli("exceptions", "list", "--as", "mallory")

    assert result.exit_code == 1
    assert "unknown or disabled user 'mallory'" in result.output

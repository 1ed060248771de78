"""The operator CLI authenticates with personal access tokens, refuses by role with the
role needed, and audits exactly like the console; the first admin is bootstrapped with the
owner's credentials only."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from cli.main import main
from q2c.errors import Q2CError
from queries.sign_in import sign_in
from queries.tokens import create_token
from tests.support.fixtures import PASSWORD


@pytest.fixture
def cli(db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch):
    """Run `q2c`; `--as NAME` also passes NAME's personal access token (made on first use)."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("Q2C_REPLAY_ALLOWED_HOSTS", "127.0.0.1")
    for name in ("Q2C_USER", "Q2C_TOKEN", "Q2C_MIGRATION_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    tokens: dict[str, str] = {}

    def run(*args: str, input: str | None = None):
        argv = list(args)
        if "--as" in argv:
            name = argv[argv.index("--as") + 1]
            if name not in tokens:
                try:
                    tokens[name] = create_token(engine, name, name)[0]
                except Q2CError:
                    tokens[name] = ""  # no such user: no token to give
            argv += ["--token", tokens[name]] if tokens[name] else []
        return CliRunner().invoke(main, argv, input=input)

    return run


def _add(cli, *args: str):
    return cli("users", "add", *args, "--password-stdin", input=PASSWORD + "\n")


def test_the_first_admin_is_bootstrapped_with_the_owners_credentials_only(
    cli, owner_db_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_runtime = _add(cli, "ada", "--role", "admin")
    monkeypatch.setenv("Q2C_MIGRATION_DATABASE_URL", owner_db_url)
    not_admin = _add(cli, "fin", "--role", "finance_ops")
    admin = _add(cli, "ada", "--role", "admin", "--print-token")
    second = _add(cli, "eve", "--role", "admin")
    added = _add(cli, "fin", "--role", "finance_ops", "--token", admin.stdout.strip())
    by_fin = cli("users", "set-role", "fin", "admin", "--as", "fin")
    listing = cli("users", "list", "--as", "ada", "--json")

    assert as_runtime.exit_code == 1 and "needs the schema owner's credentials" in as_runtime.output
    assert (
        not_admin.exit_code == 1 and "create the first user with --role admin" in not_admin.output
    )
    assert admin.exit_code == 0 and "created ada (admin)" in admin.stderr
    assert admin.stdout.startswith("q2c_pat_") and len(admin.stdout.split()) == 1
    assert second.exit_code == 1 and "an admin exists already" in second.output
    assert added.exit_code == 0 and "created fin (finance_ops)" in added.output
    assert by_fin.exit_code == 1
    assert "managing users needs the admin role or higher; fin is finance_ops" in by_fin.output
    assert [(u["username"], u["role"]) for u in json.loads(listing.output)] == [
        ("ada", "admin"),
        ("fin", "finance_ops"),
    ]
    stored = db.execute("SELECT password_hash FROM users WHERE username = 'fin'").fetchone()[0]
    assert stored.startswith("$argon2") and PASSWORD not in stored
    assert db.execute(
        "SELECT actor, action, object_id FROM audit_log WHERE action LIKE 'user.%' ORDER BY id"
    ).fetchall() == [
        ("bootstrap", "user.created", "ada"),
        ("ada", "user.created", "fin"),
    ]


def test_a_limited_exception_list_says_how_many_it_left_out(cli, users, dead_letters) -> None:
    dead_letters(3)

    limited = cli("exceptions", "list", "--as", "fin", "--limit", "2", "--json")
    whole = cli("exceptions", "list", "--as", "fin", "--json")

    assert limited.exit_code == 0 and whole.exit_code == 0
    assert len(json.loads(limited.stdout)) == 2
    assert "2 of 3 matching exceptions shown (--limit)" in limited.stderr
    assert "matching exceptions shown" not in whole.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("exceptions", "list", "--as", "fin", "--limit", "-5"), "-5 is not in the range x>=1"),
        (("dead-letters", "list", "--as", "ops", "--limit", "0"), "0 is not in the range x>=1"),
        (("replay", "status", "--as", "ops", "--limit", "-1"), "-1 is not in the range x>=1"),
        (("kpis", "--window", "99999999d"), "--window: 99999999d is longer than 3660 days"),
        (("kpis", "--window", "1e400d"), "--window: "),
        (("exceptions", "list", "--as", "fin", "--status", "bogus"), "'bogus' is not one of"),
        (("exceptions", "list", "--as", "fin", "--impact", "urgent"), "'urgent' is not one of"),
        (("reconcile", "breaks", "--as", "fin", "--run", "99999"), "no reconciliation run 99999"),
    ],
)
def test_bad_input_is_refused_in_one_line_not_a_traceback(cli, users, args, said) -> None:
    result = cli(*args)

    assert result.exit_code in (1, 2) and said in result.output, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


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


def test_a_command_without_a_valid_token_is_refused(cli, users) -> None:
    missing = cli("exceptions", "list")
    unknown = cli("exceptions", "list", "--token", "q2c_pat_guessed")
    mismatch = cli("exceptions", "list", "--as", "fin", "--as", "ada")

    assert missing.exit_code == 1 and "give your personal access token" in missing.output
    assert unknown.exit_code == 1
    assert "the token is unknown, expired or revoked" in unknown.output
    assert mismatch.exit_code == 1
    assert "--as ada does not match the token, which is fin's" in mismatch.output


def test_starting_work_makes_exceptions_in_progress_and_yours(
    cli, users, dead_letters, db: psycopg.Connection
) -> None:
    dead_letters(2)
    first, second = (str(i) for (i,) in db.execute("SELECT id FROM exceptions ORDER BY id"))
    cli("exceptions", "assign", second, "--to", "ops", "--as", "fin")

    started = cli("exceptions", "start", first, second, "--as", "fin")
    again = cli("exceptions", "start", first, "--as", "fin")

    assert started.exit_code == 0 and "started work on 2 exception(s)" in started.output
    assert again.exit_code == 2 and f"skipped {first}: already in_progress" in again.output
    assert db.execute("SELECT status, owner FROM exceptions ORDER BY id").fetchall() == [
        ("in_progress", "fin"),
        ("in_progress", "ops"),
    ]
    assert db.execute(
        "SELECT actor, action, before, after FROM exception_events "
        "WHERE action = 'started_work' ORDER BY id"
    ).fetchall() == [
        (
            "fin",
            "started_work",
            {"status": "open", "owner": None},
            {"status": "in_progress", "owner": "fin"},
        ),
        (
            "fin",
            "started_work",
            {"status": "assigned", "owner": "ops"},
            {"status": "in_progress", "owner": "ops"},
        ),
    ]


def test_admins_disable_enable_reset_and_name_users(
    cli, engine: Engine, users: dict[str, str]
) -> None:
    disabled = cli("users", "disable", "fin", "--as", "ada")
    refused_sign_in = sign_in(engine, "fin", PASSWORD, None).user
    enabled = cli("users", "enable", "fin", "--as", "ada")
    reset = cli(
        "users",
        "reset-password",
        "fin",
        "--password-stdin",
        "--as",
        "ada",
        input="another long passphrase\n",
    )
    named = cli(
        "users",
        "set-profile",
        "fin",
        "--name",
        "Fin Ops",
        "--email",
        "fin@example.com",
        "--as",
        "ada",
    )
    by_fin = cli("users", "disable", "ops", "--as", "fin")
    listing = json.loads(cli("users", "list", "--as", "ada", "--json").output)

    assert (disabled.exit_code, disabled.output) == (0, "fin is disabled\n")
    assert refused_sign_in is None
    assert (enabled.exit_code, enabled.output) == (0, "fin is enabled\n")
    assert (reset.exit_code, reset.output) == (0, "fin has a new password\n")
    assert named.output == "fin: Fin Ops <fin@example.com>\n"
    assert by_fin.exit_code == 1 and "needs the admin role" in by_fin.output
    fin = next(user for user in listing if user["username"] == "fin")
    assert (fin["display_name"], fin["email"], fin["disabled"]) == (
        "Fin Ops",
        "fin@example.com",
        False,
    )


def test_on_call_redrives_with_a_dry_run_cancels_and_discards(
    cli, users, dead_letters, db: psycopg.Connection
) -> None:
    letters = dead_letters(3)

    dry = cli(
        "replay", "redrive", "--filter", "INV-R", "--rate", "0.01", "--dry-run", "--as", "ops"
    )
    nothing_yet = db.execute("SELECT count(*) FROM replays").fetchone()
    started = cli("replay", "redrive", "--filter", "INV-R", "--rate", "0.01", "--as", "ops")
    redrive_id = started.output.split()[1].rstrip(":")
    cancelled = cli("replay", "cancel", redrive_id, "--as", "ops")
    discarded = cli(
        "dead-letters", "discard", str(letters[0]), "--reason", "posted by hand", "--as", "ops"
    )
    again = cli("dead-letters", "discard", str(letters[0]), "--reason", "twice", "--as", "ops")

    assert dry.exit_code == 0
    assert dry.output.startswith("3 dead letter(s) match; 3 would be replayed, 300 s at 0.01")
    assert nothing_yet == (0,)
    assert started.exit_code == 0 and "3 replay(s) queued at 0.01 a second" in started.output
    assert cancelled.output == f"redrive {redrive_id}: 3 pending replay(s) cancelled\n"
    assert discarded.output == f"dead letter {letters[0]}: discarded\n"
    assert again.exit_code == 2 and "left alone: it is discarded" in again.output
    assert db.execute(
        "SELECT status, count(*) FROM dead_letters GROUP BY 1 ORDER BY 1"
    ).fetchall() == [("dead", 2), ("discarded", 1)]


def test_ignore_until_a_moment_or_a_recurrence_and_list_regressions(
    cli, users, dead_letters, db: psycopg.Connection
) -> None:
    dead_letters(3)
    ids = [str(i) for (i,) in db.execute("SELECT id FROM exceptions ORDER BY id").fetchall()]
    db.execute("UPDATE exceptions SET regressed_from = %s WHERE id = %s", (ids[0], ids[2]))

    dated = cli(
        "exceptions", "ignore", ids[0], "--reason", "freeze", "--until", "2099-01-31", "--as", "fin"
    )
    recurs = cli(
        "exceptions", "ignore", ids[1], "--reason", "flaky", "--until-recurs", "--as", "fin"
    )
    both = cli(
        "exceptions", "ignore", ids[2], "--reason", "x", "--until", "2099-01-31", "--until-recurs",
        "--as", "fin",
    )  # fmt: skip
    regressed = cli("exceptions", "list", "--regressed", "--as", "fin", "--json")

    assert dated.exit_code == 0 and recurs.exit_code == 0
    assert both.exit_code == 1 and "not both" in both.output
    assert db.execute(
        "SELECT ignored_until, ignored_until_recurs FROM exceptions WHERE id = ANY (%s) "
        "ORDER BY id",
        ([int(i) for i in ids[:2]],),
    ).fetchall() == [(datetime(2099, 1, 31, tzinfo=UTC), False), (None, True)]
    assert [(row["id"], row["regressed_from"]) for row in json.loads(regressed.output)] == [
        (int(ids[2]), int(ids[0]))
    ]

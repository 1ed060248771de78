"""Personal access tokens: shown once, stored only as a hash, limited in time, revocable,
each use audited with the token's id; users manage their own, admins anyone's."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from cli.main import main
from q2c.errors import Q2CError
from queries.roles import UnknownUser
from queries.tokens import authenticate_token, create_token, list_tokens, revoke_token


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    for name in ("Q2C_USER", "Q2C_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, token: str):
        return CliRunner().invoke(main, [*args, "--token", token])

    return run


def test_an_admin_creates_a_token_that_is_printed_once_and_stored_as_a_hash(
    cli, engine: Engine, users, tokens, db: psycopg.Connection
) -> None:
    plain = cli("users", "token", "create", "ops", "--expires", "30d", token=tokens["ada"])
    as_json = cli("users", "token", "create", "ops", "--json", token=tokens["ada"])
    listed = cli("users", "token", "list", "ops", "--json", token=tokens["ada"])

    assert plain.exit_code == 0 and plain.stdout.startswith("q2c_pat_")
    assert len(plain.stdout.split()) == 1
    created = json.loads(as_json.output)
    assert set(created) == {"id", "token", "expires_at"}
    assert authenticate_token(engine, created["token"], "test").user.username == "ops"
    stored = db.execute("SELECT token_hash, prefix FROM api_tokens").fetchall()
    for token in (plain.stdout.strip(), created["token"]):
        assert (hashlib.sha256(token.encode()).digest(), token[:12]) in [
            (bytes(h), p) for h, p in stored
        ]
    assert token not in listed.output and plain.stdout.strip() not in listed.output
    assert len(json.loads(listed.output)) == 3  # the fixture's, and the two above


def test_every_use_is_audited_with_the_tokens_id(
    cli, engine: Engine, users, tokens, dead_letters, db: psycopg.Connection
) -> None:
    (token_id,) = db.execute("SELECT id FROM api_tokens WHERE username = 'fin'").fetchone()

    for _ in range(2):
        assert cli("exceptions", "list", token=tokens["fin"]).exit_code == 0

    assert (
        db.execute(
            "SELECT actor, token_id, detail->>'use' FROM audit_log WHERE action = 'token.used'"
        ).fetchall()
        == [("fin", token_id, "main exceptions list")] * 2
    )
    assert db.execute(
        "SELECT last_used_at IS NOT NULL FROM api_tokens WHERE id = %s", (token_id,)
    ).fetchone() == (True,)


def test_revoked_and_expired_tokens_and_disabled_users_are_refused(
    engine: Engine, users, tokens, db: psycopg.Connection
) -> None:
    revoked, _ = create_token(engine, "ops", "ops")
    expired, expired_info = create_token(engine, "ops", "ops")
    revoke_token(engine, "ops", list_tokens(engine, "ops")[1].id)
    db.execute(
        "UPDATE api_tokens SET created_at = now() - interval '2 days', "
        "expires_at = now() - interval '1 day' WHERE id = %s",
        (expired_info.id,),
    )
    db.execute("UPDATE users SET disabled = true WHERE username = 'cio'")

    for token in (revoked, expired, tokens["cio"]):
        with pytest.raises(UnknownUser):
            authenticate_token(engine, token, "test")
    assert authenticate_token(engine, tokens["ops"], "test").user.username == "ops"


def test_users_manage_their_own_tokens_and_admins_anyones(engine: Engine, users, tokens) -> None:
    own, _ = create_token(engine, "fin", "fin")
    theirs = list_tokens(engine, "ada", "fin")

    with pytest.raises(Q2CError, match="only admins manage another user's tokens"):
        create_token(engine, "fin", "ops")
    with pytest.raises(Q2CError, match="only admins manage another user's tokens"):
        revoke_token(engine, "fin", list_tokens(engine, "ops")[0].id)
    with pytest.raises(Q2CError, match="must expire, within 366 days"):
        create_token(engine, "fin", "fin", lifetime=timedelta(days=400))
    assert len(theirs) == 2 and {t.username for t in theirs} == {"fin"}
    fixtures = theirs[-1]  # the older one, made by the fixture
    assert revoke_token(engine, "ada", fixtures.id).revoked_at is not None
    with pytest.raises(Q2CError, match="already revoked"):
        revoke_token(engine, "fin", fixtures.id)
    with pytest.raises(UnknownUser):
        authenticate_token(engine, tokens["fin"], "test")
    assert authenticate_token(engine, own, "test").token_id == theirs[0].id


def test_a_token_made_with_a_token_expires_with_it_and_is_revoked_with_it(
    cli, engine: Engine, users, db: psycopg.Connection
) -> None:
    parent, info = create_token(engine, "ada", "ada", timedelta(days=7))
    made = cli("users", "token", "create", "ops", "--expires", "90d", "--json", token=parent)
    child = json.loads(made.output)

    revoked = cli("users", "token", "revoke", str(info.id), token=parent)

    assert made.exit_code == 0 and revoked.exit_code == 0
    assert child["expires_at"] <= info.expires_at.isoformat()
    with pytest.raises(UnknownUser):
        authenticate_token(engine, child["token"], "test")
    assert db.execute("SELECT detail FROM audit_log WHERE action = 'token.revoked'").fetchone() == (
        {"token": f"(no name) ({info.prefix}…)", "revoked_with_it": [child["id"]]},
    )

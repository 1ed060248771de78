"""Admins manage users: disable and enable, reset a password, set a display name and
e-mail, change a role. Each is audited, ends the sessions it should, and never leaves the
installation without an enabled admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from q2c.errors import Q2CError
from queries.roles import PermissionDenied, UnknownUser
from queries.sessions import open_session, resume_session
from queries.sign_in import sign_in
from queries.tokens import authenticate_token, create_token
from queries.user_admin import list_users, reset_password, set_disabled, set_profile, set_role
from queries.users import lookup_user
from tests.support.fixtures import PASSWORD

NEW_PASSWORD = "a brand new passphrase"


def _audit(engine: Engine, action: str) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT actor, object_id, detail FROM audit_log WHERE action = :a ORDER BY id"),
            {"a": action},
        ).all()


def test_a_disabled_user_is_signed_out_cannot_sign_in_or_use_a_token(
    engine: Engine, users: dict[str, str]
) -> None:
    session = open_session(engine, lookup_user(engine, "fin"), timedelta(hours=1), None)
    token, _ = create_token(engine, "fin", "fin")

    disabled = set_disabled(engine, "ada", "fin", True)

    assert disabled.disabled
    assert resume_session(engine, session) is None
    assert sign_in(engine, "fin", PASSWORD, None).user is None
    with pytest.raises(UnknownUser):
        authenticate_token(engine, token, "test")
    assert _audit(engine, "user.disabled") == [
        ("ada", "fin", {"before": {"disabled": False}, "after": {"disabled": True}})
    ]

    set_disabled(engine, "ada", "fin", False)

    assert sign_in(engine, "fin", PASSWORD, None).user is not None
    assert resume_session(engine, session) is None  # re-enabling revives no old session
    assert [row.object_id for row in _audit(engine, "user.enabled")] == ["fin"]


def test_a_password_reset_replaces_the_password_and_ends_sessions(
    engine: Engine, users: dict[str, str]
) -> None:
    session = open_session(engine, lookup_user(engine, "ops"), timedelta(hours=1), None)

    reset_password(engine, "ada", "ops", NEW_PASSWORD)

    assert resume_session(engine, session) is None
    assert sign_in(engine, "ops", PASSWORD, None).user is None
    assert sign_in(engine, "ops", NEW_PASSWORD, None).user is not None
    [(actor, target, detail)] = _audit(engine, "user.password_reset")
    assert (actor, target, detail) == ("ada", "ops", {})  # never the password
    with pytest.raises(Q2CError, match="at least 10 characters"):
        reset_password(engine, "ada", "ops", "short")


def test_display_name_and_email_are_set_and_audited(engine: Engine, users: dict[str, str]) -> None:
    changed = set_profile(engine, "ada", "cio", "  Chief Information Officer ", "CIO@example.com")

    assert (changed.display_name, changed.email) == ("Chief Information Officer", "CIO@example.com")
    listed = {user.username: user for user in list_users(engine, "ada")}
    assert listed["cio"].email == "CIO@example.com"
    [(_, _, detail)] = _audit(engine, "user.profile_changed")
    assert detail["after"] == {
        "display_name": "Chief Information Officer",
        "email": "CIO@example.com",
    }
    assert detail["before"]["email"] == ""
    for name, email in (("ok", "not-an-address"), ("bell\x07", None), ("x" * 101, None)):
        with pytest.raises(Q2CError):
            set_profile(engine, "ada", "cio", name, email)


def test_nobody_disables_themselves_or_the_last_admin(
    engine: Engine, users: dict[str, str]
) -> None:
    with pytest.raises(Q2CError, match="cannot disable yourself"):
        set_disabled(engine, "ada", "ada", True)
    set_role(engine, "ada", "ops", "admin")
    set_disabled(engine, "ops", "ada", True)  # two admins: one may go
    with pytest.raises(Q2CError, match="last enabled admin"):
        set_role(engine, "ops", "ops", "viewer")
    assert lookup_user(engine, "ops").role == "admin"


def test_a_role_change_ends_the_users_sessions(engine: Engine, users: dict[str, str]) -> None:
    session = open_session(engine, lookup_user(engine, "fin"), timedelta(hours=1), None)

    set_role(engine, "ada", "fin", "oncall")
    set_role(engine, "ada", "fin", "finance_ops")  # back as it was: the session stays ended

    assert resume_session(engine, session) is None
    assert [row.detail for row in _audit(engine, "user.role_changed")] == [
        {"before": {"role": "finance_ops"}, "after": {"role": "oncall"}},
        {"before": {"role": "oncall"}, "after": {"role": "finance_ops"}},
    ]


@pytest.mark.parametrize(
    "command",
    [
        lambda engine: set_disabled(engine, "ops", "fin", True),
        lambda engine: reset_password(engine, "ops", "fin", NEW_PASSWORD),
        lambda engine: set_profile(engine, "ops", "fin", "Fin", None),
    ],
    ids=["disable", "reset password", "profile"],
)
def test_only_admins_manage_users(engine: Engine, users: dict[str, str], command) -> None:
    with pytest.raises(PermissionDenied, match="needs the admin role"):
        command(engine)
    assert sign_in(engine, "fin", PASSWORD, None).user is not None
    assert _audit(engine, "user.disabled") == _audit(engine, "user.password_reset") == []

"""`q2c users`: console users, their roles and their personal access tokens."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy import Engine

from cli._common import AS_JSON, acting, acting_session, emit
from q2c.errors import Q2CError
from q2c.settings import Settings
from q2c.vocabulary import ROLES


@click.group()
def users() -> None:
    """Console users and their roles (viewer, finance_ops, oncall, admin)."""


@users.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--print-token",
    is_flag=True,
    help="Also create a personal access token (90 days) for the new user and print it, alone, "
    "on standard output.",
)
@acting
@click.pass_context
def users_add(
    ctx: click.Context,
    username: str,
    role: str,
    display_name: str,
    password_stdin: bool,
    print_token: bool,
    token: str | None,
    claimed: str | None,
) -> None:
    """Create a console user (argon2-hashed password); admins only.

    The first admin of a new database is created without a token, with the schema owner's
    credentials (Q2C_MIGRATION_DATABASE_URL, else DATABASE_URL), and only while no admin
    exists.
    """
    from queries.tokens import create_token
    from queries.user_admin import add_user
    from queries.users import bootstrap_admin

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if token:
        with acting_session(ctx, token, claimed) as (engine, actor):
            add_user(engine, actor, username, role, password, display_name)
            parent = ctx.meta["q2c.token_id"]
            made = create_token(engine, actor, username, parent_id=parent) if print_token else None
            created = made[0] if made else None
    else:
        with owner_engine(ctx) as engine:
            bootstrap_admin(engine, username, role, password, display_name)
            created = create_token(engine, username, username)[0] if print_token else None
    click.echo(f"created {username} ({role})", err=print_token)
    if created is not None:
        click.echo(created)


@contextmanager
def owner_engine(ctx: click.Context) -> Iterator[Engine]:
    """An engine connected as the schema's owner (for the first admin only)."""
    from q2c.database import create_db_engine, database_urls
    from q2c.privileges import may_act_as_owner

    settings: Settings = ctx.find_root().obj
    with database_urls(settings) as urls:
        if not may_act_as_owner(urls.migration):
            raise Q2CError(
                "creating the first admin needs the schema owner's credentials: set "
                "Q2C_MIGRATION_DATABASE_URL (or ask an admin for a token to add users with)"
            )
        engine = create_db_engine(urls.migration, settings)
        try:
            yield engine
        finally:
            engine.dispose()


@users.command("list")
@acting
@AS_JSON
@click.pass_context
def users_list(ctx: click.Context, token: str | None, claimed: str | None, as_json: bool) -> None:
    """List users and their roles (admins only)."""
    from dataclasses import asdict

    from queries.user_admin import list_users

    with acting_session(ctx, token, claimed) as (engine, actor):
        rows = [asdict(user) for user in list_users(engine, actor)]
    emit(rows, ("username", "role", "display_name", "email", "disabled"), as_json)


@users.command("set-role")
@acting
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@click.pass_context
def users_set_role(
    ctx: click.Context, token: str | None, claimed: str | None, username: str, role: str
) -> None:
    """Change a user's role (admins only)."""
    from queries.user_admin import set_role

    with acting_session(ctx, token, claimed) as (engine, actor):
        user = set_role(engine, actor, username, role)
    click.echo(f"{user.username} is now {user.role}")


def _access_command(name: str, disabled: bool, help_text: str) -> click.Command:
    """`q2c users disable` or `enable`: one command, two directions."""

    @acting
    @click.argument("username")
    @click.pass_context
    def command(ctx: click.Context, token: str | None, claimed: str | None, username: str) -> None:
        from queries.user_admin import set_disabled

        with acting_session(ctx, token, claimed) as (engine, actor):
            set_disabled(engine, actor, username, disabled)
        click.echo(f"{username} is {name}d")

    return click.command(name, help=help_text)(command)


users.add_command(
    _access_command(
        "disable",
        True,
        "Disable a user: no sign-in, no token use, their console sessions end (admins only).",
    )
)
users.add_command(_access_command("enable", False, "Enable a disabled user again (admins only)."))


@users.command("reset-password")
@acting
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def users_reset_password(
    ctx: click.Context, token: str | None, claimed: str | None, username: str, password_stdin: bool
) -> None:
    """Give USERNAME a new password; their console sessions end (admins only)."""
    from queries.user_admin import reset_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    with acting_session(ctx, token, claimed) as (engine, actor):
        reset_password(engine, actor, username, password)
    click.echo(f"{username} has a new password")


@users.command("set-profile")
@acting
@click.argument("username")
@click.option("--name", "display_name", required=True, help="Display name.")
@click.option("--email", default=None, help="E-mail (the one single sign-on matches).")
@click.pass_context
def users_set_profile(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    username: str,
    display_name: str,
    email: str | None,
) -> None:
    """Set USERNAME's display name and e-mail (admins only)."""
    from queries.user_admin import set_profile

    with acting_session(ctx, token, claimed) as (engine, actor):
        user = set_profile(engine, actor, username, display_name, email)
    click.echo(f"{user.username}: {user.display_name} <{user.email or 'no e-mail'}>")


@users.group("token")
def users_token() -> None:
    """Personal access tokens: what the operator commands authenticate with."""


@users_token.command("create")
@click.argument("username")
@click.option(
    "--expires",
    "lifetime",
    default="90d",
    show_default=True,
    help="Lifetime: 30s, 12h, 90d, … (at most 366d).",
)
@click.option("--name", default="", help="What the token is for.")
@acting
@AS_JSON
@click.pass_context
def users_token_create(
    ctx: click.Context,
    username: str,
    lifetime: str,
    name: str,
    token: str | None,
    claimed: str | None,
    as_json: bool,
) -> None:
    """Create a token for USERNAME (yourself, or anyone as admin) and print it once."""
    from q2c.durations import parse_duration
    from queries.tokens import create_token

    try:
        span = parse_duration(lifetime)
    except ValueError as exc:
        raise Q2CError(f"--expires: {exc}") from None
    with acting_session(ctx, token, claimed) as (engine, actor):
        parent = ctx.meta["q2c.token_id"]
        created, info = create_token(engine, actor, username, span, name, parent_id=parent)
    if as_json:
        emit({"id": info.id, "token": created, "expires_at": info.expires_at}, (), True)
    else:
        click.echo(created)


@users_token.command("list")
@click.argument("username", required=False)
@acting
@AS_JSON
@click.pass_context
def users_token_list(
    ctx: click.Context, username: str | None, token: str | None, claimed: str | None, as_json: bool
) -> None:
    """List USERNAME's tokens (by default your own), never the tokens themselves."""
    from dataclasses import asdict

    from queries.tokens import list_tokens

    with acting_session(ctx, token, claimed) as (engine, actor):
        rows = [asdict(info) for info in list_tokens(engine, actor, username)]
    emit(
        rows,
        (
            "id",
            "username",
            "name",
            "prefix",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ),
        as_json,
    )


@users_token.command("revoke")
@click.argument("token_id", type=int)
@acting
@click.pass_context
def users_token_revoke(
    ctx: click.Context, token_id: int, token: str | None, claimed: str | None
) -> None:
    """Revoke a token at once (yours, or anyone's as admin)."""
    from queries.tokens import revoke_token

    with acting_session(ctx, token, claimed) as (engine, actor):
        info = revoke_token(engine, actor, token_id)
    click.echo(f"revoked token {info.id} of {info.username}")

"""Operator commands of `q2c`: exceptions, dead letters, replays and users. Each acts as a
named user (--as, or Q2C_USER), checked and audited exactly as in the console."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import click
from sqlalchemy import Engine

from q2c.errors import Q2CError
from q2c.settings import Settings
from queries.roles import ROLES

AS_USER = click.option("--as", "actor", envvar="Q2C_USER", required=True, metavar="USER",
                       help="Act as this console user [env: Q2C_USER].")  # fmt: skip
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@contextmanager
def _engine(ctx: click.Context) -> Iterator[Engine]:
    from q2c.database import create_db_engine, database_url

    settings: Settings = ctx.find_root().obj
    with database_url(settings) as url:
        engine = create_db_engine(url, settings)
        try:
            yield engine
        finally:
            engine.dispose()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return round(value.total_seconds())
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _emit(rows: Sequence[dict] | dict, columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, default=_plain, indent=2))
        return
    rows = [rows] if isinstance(rows, dict) else rows
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    value = _plain(value)
    text = "" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _report(changed: Sequence[int], skipped: dict[int, str], verb: str) -> None:
    click.echo(
        f"{verb} {len(changed)} exception(s)"
        + (f": {', '.join(map(str, changed))}" if changed else "")
    )
    for exception_id, reason in skipped.items():
        click.echo(f"  skipped {exception_id}: {reason}")
    if skipped and not changed:
        sys.exit(2)


# --- exceptions ---------------------------------------------------------------------------


@click.group()
def exceptions() -> None:
    """Triage exceptions: list, show, assign, comment, resolve, ignore."""


@exceptions.command("list")
@AS_USER
@AS_JSON
@click.option("--status", multiple=True, help="Status (repeatable) [default: open ones].")
@click.option("--process")
@click.option("--stage")
@click.option("--system")
@click.option("--impact", multiple=True, help="critical, high, medium, low (repeatable).")
@click.option("--owner")
@click.option("--search", help="Text in message, error type, correlation ID or business keys.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.pass_context
def exceptions_list(ctx: click.Context, actor: str, as_json: bool, status: tuple[str, ...],
                    process: str | None, stage: str | None, system: str | None,
                    impact: tuple[str, ...], owner: str | None, search: str | None,
                    limit: int) -> None:  # fmt: skip
    """List exceptions, most urgent first."""
    from queries.exceptions import OPEN_STATUSES, ExceptionFilter, list_exceptions
    from queries.users import authorize

    filters = ExceptionFilter(statuses=status or OPEN_STATUSES, process=process, stage=stage,
                              system=system, impact=impact, owner=owner, search=search)  # fmt: skip
    with _engine(ctx) as engine:
        authorize(engine, actor, "exceptions.view")
        rows = list_exceptions(engine, filters, limit)
    _emit(rows, ("id", "impact", "status", "owner", "process", "stage", "kind", "correlation_id",
                 "amount", "age", "message"), as_json)  # fmt: skip


@exceptions.command("show")
@AS_USER
@AS_JSON
@click.argument("exception_id", type=int)
@click.pass_context
def exceptions_show(ctx: click.Context, actor: str, as_json: bool, exception_id: int) -> None:
    """Show one exception with its failures, history, timeline, dead letters and replays."""
    from queries.exceptions import exception_detail
    from queries.users import authorize

    with _engine(ctx) as engine:
        authorize(engine, actor, "exceptions.view")
        detail = exception_detail(engine, exception_id)
    if as_json:
        _emit(detail, (), True)
        return
    for key, value in detail.items():
        if not isinstance(value, list):
            click.echo(f"{key:>15}: {_cell(value)}")
    for section in ("occurrences", "timeline", "history", "dead_letters", "replays"):
        click.echo(f"\n{section}:")
        rows = detail[section]
        _emit(rows, tuple(rows[0]) if rows else ("-",), False)


@exceptions.command("assign")
@AS_USER
@click.argument("exception_ids", type=int, nargs=-1, required=True)
@click.option("--to", "owner", required=True, help="The new owner (a console user).")
@click.option("--comment")
@click.pass_context
def exceptions_assign(ctx: click.Context, actor: str, exception_ids: tuple[int, ...], owner: str,
                      comment: str | None) -> None:  # fmt: skip
    """Assign exceptions to a user."""
    from queries.exceptions import assign

    with _engine(ctx) as engine:
        result = assign(engine, actor, exception_ids, owner, comment)
    _report(result.changed, result.skipped, f"assigned to {owner}:")


@exceptions.command("comment")
@AS_USER
@click.argument("exception_id", type=int)
@click.argument("text")
@click.pass_context
def exceptions_comment(ctx: click.Context, actor: str, exception_id: int, text: str) -> None:
    """Add a comment to an exception."""
    from queries.exceptions import comment

    with _engine(ctx) as engine:
        result = comment(engine, actor, exception_id, text)
    _report(result.changed, result.skipped, "commented on")


def _closing_command(status: str, verb: str) -> click.Command:
    """`q2c exceptions resolve|ignore`: close exceptions with a reason."""

    @click.argument("exception_ids", type=int, nargs=-1, required=True)
    @click.option("--reason", required=True)
    @AS_USER
    @click.pass_context
    def close(ctx: click.Context, actor: str, exception_ids: tuple[int, ...], reason: str) -> None:
        from queries.exceptions import close_exceptions

        with _engine(ctx) as engine:
            result = close_exceptions(engine, actor, exception_ids, status, reason)
        _report(result.changed, result.skipped, status)

    close.__doc__ = f"{verb.capitalize()} exceptions, with the reason."
    return exceptions.command(verb)(close)


_closing_command("resolved", "resolve")
_closing_command("ignored", "ignore")


# --- dead letters and replays ----------------------------------------------------------------


@click.group("dead-letters")
def dead_letters() -> None:
    """Inspect dead-lettered messages."""


@dead_letters.command("list")
@AS_USER
@AS_JSON
@click.option("--status", type=click.Choice(["dead", "replay_pending", "replayed", "discarded"]))
@click.option("--search")
@click.option("--limit", type=int, default=100, show_default=True)
@click.pass_context
def dead_letters_list(ctx: click.Context, actor: str, as_json: bool, status: str | None,
                      search: str | None, limit: int) -> None:  # fmt: skip
    """List dead letters, newest first, with their latest replay."""
    from queries.replays import list_dead_letters

    with _engine(ctx) as engine:
        rows = list_dead_letters(engine, actor, status, search, limit)
    _emit(rows, ("id", "occurred_at", "correlation_id", "stage", "status", "target_url",
                 "replay_status", "error_message"), as_json)  # fmt: skip


@dead_letters.command("show")
@AS_USER
@AS_JSON
@click.argument("dead_letter_id", type=int)
@click.pass_context
def dead_letters_show(ctx: click.Context, actor: str, as_json: bool, dead_letter_id: int) -> None:
    """Show one dead letter: payload, headers, target and replays."""
    from queries.replays import dead_letter_detail

    with _engine(ctx) as engine:
        detail = dead_letter_detail(engine, actor, dead_letter_id)
    if as_json:
        _emit(detail, (), True)
        return
    for key, value in detail.items():
        if key not in ("replays", "payload"):
            click.echo(f"{key:>16}: {_cell(value)}")
    click.echo(f"\npayload:\n{detail['payload']}\n\nreplays:")
    _emit(detail["replays"], ("id", "requested_by", "requested_at", "status", "attempts",
                              "response_code", "error"), False)  # fmt: skip


@click.group()
def replay() -> None:
    """Request replays of dead letters and follow them."""


@replay.command("request")
@AS_USER
@click.argument("dead_letter_ids", type=int, nargs=-1)
@click.option("--filter", "search", help="Replay every dead (not yet replayed) letter matching "
              "this text in correlation ID, target or error.")  # fmt: skip
@click.option("--payload-file", type=click.File("r"), help="Send this payload instead.")
@click.option("--force", is_flag=True, help="Replay even if already replayed successfully.")
@click.pass_context
def replay_request(ctx: click.Context, actor: str, dead_letter_ids: tuple[int, ...],
                   search: str | None, payload_file, force: bool) -> None:  # fmt: skip
    """Queue replays of DEAD_LETTER_IDS (or of those --filter matches)."""
    from queries.replays import list_dead_letters, request_replays

    if not dead_letter_ids and not search:
        raise Q2CError("name dead letter IDs or give --filter")
    settings: Settings = ctx.find_root().obj
    with _engine(ctx) as engine:
        ids = list(dead_letter_ids)
        if search:
            ids += [row["id"] for row in list_dead_letters(engine, actor, "dead", search, 1000)]
        outcome = request_replays(engine, actor, ids, settings.allowed_replay_hosts,
                                  payload_file.read() if payload_file else None, force)  # fmt: skip
    for letter, replay_id in outcome.created.items():
        click.echo(f"dead letter {letter}: replay {replay_id} queued")
    for letter, replay_id in outcome.existing.items():
        click.echo(f"dead letter {letter}: replay {replay_id} already under way")
    for letter, reason in outcome.refused.items():
        click.echo(f"dead letter {letter}: refused: {reason}")
    if outcome.refused and not (outcome.created or outcome.existing):
        sys.exit(2)


@replay.command("status")
@AS_USER
@AS_JSON
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def replay_status_cmd(ctx: click.Context, actor: str, as_json: bool, limit: int) -> None:
    """Show the latest replays and their outcomes."""
    from queries.replays import replay_status

    with _engine(ctx) as engine:
        rows = replay_status(engine, actor, limit)
    _emit(rows, ("id", "dead_letter_id", "requested_by", "requested_at", "status", "attempts",
                 "response_code", "target_url", "error"), as_json)  # fmt: skip


@replay.command("run-once")
@click.pass_context
def replay_run_once(ctx: click.Context) -> None:
    """Deliver every replay that is due now, once, and print the outcome."""
    from q2c.database import database_url
    from replay.dispatcher import Dispatcher

    settings: Settings = ctx.find_root().obj
    with database_url(settings) as url:
        dispatcher = Dispatcher(url, settings)
        try:
            report = dispatcher.run_once()
        finally:
            dispatcher.close()
    click.echo(f"claimed {report.claimed}: {len(report.succeeded)} succeeded, "
               f"{len(report.retrying)} will retry, {len(report.failed)} failed")  # fmt: skip


# --- users ------------------------------------------------------------------------------------


@click.group()
def users() -> None:
    """Console users and their roles (viewer, finance_ops, oncall, admin)."""


@users.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--as", "actor", envvar="Q2C_USER", metavar="USER",
              help="Acting admin (not needed to create the first admin).")  # fmt: skip
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def users_add(ctx: click.Context, username: str, role: str, display_name: str,
              actor: str | None, password_stdin: bool) -> None:  # fmt: skip
    """Create a console user (argon2-hashed password)."""
    from queries.users import any_admin, authorize, create_user

    with _engine(ctx) as engine:
        if any_admin(engine):
            if not actor:
                raise Q2CError("adding users needs --as ADMIN once an admin exists")
            authorize(engine, actor, "users.manage")
        elif role != "admin":
            raise Q2CError("no admin exists yet: create the first user with --role admin")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = click.prompt("Password", hide_input=True,
                                    confirmation_prompt=True)  # fmt: skip  # fmt: skip
        create_user(engine, username, role, password, display_name)
    click.echo(f"created {username} ({role})")


@users.command("list")
@AS_USER
@AS_JSON
@click.pass_context
def users_list(ctx: click.Context, actor: str, as_json: bool) -> None:
    """List users and their roles (admins only)."""
    from dataclasses import asdict

    from queries.users import list_users

    with _engine(ctx) as engine:
        rows = [asdict(user) for user in list_users(engine, actor)]
    _emit(rows, ("username", "role", "display_name", "disabled"), as_json)


@users.command("set-role")
@AS_USER
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@click.pass_context
def users_set_role(ctx: click.Context, actor: str, username: str, role: str) -> None:
    """Change a user's role (admins only)."""
    from queries.users import set_role

    with _engine(ctx) as engine:
        user = set_role(engine, actor, username, role)
    click.echo(f"{user.username} is now {user.role}")


COMMANDS = (exceptions, dead_letters, replay, users)

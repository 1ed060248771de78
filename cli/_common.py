"""What the operator commands share: acting as the person whose personal access token they
are given (--token, or Q2C_TOKEN; checked and audited exactly as in the console), the
database engine, and printing rows as tables or JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import click
from sqlalchemy import Engine

from q2c.errors import Q2CError
from q2c.settings import Settings
from queries.tokens import authenticate_token


def acting(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a command that acts as a person: their token, and a check of who."""
    command = click.option(
        "--as",
        "claimed",
        envvar="Q2C_USER",
        metavar="USER",
        help="Check that the token is USER's [env: Q2C_USER].",
    )(command)
    return click.option(
        "--token",
        envvar="Q2C_TOKEN",
        metavar="TOKEN",
        help="Your personal access token [env: Q2C_TOKEN].",
    )(command)


AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@contextmanager
def acting_session(
    ctx: click.Context, token: str | None, claimed: str | None
) -> Iterator[tuple[Engine, str]]:
    """An engine and the user `token` stands for (checked against `claimed`, if given); the
    use is audited with the token's id."""
    if not token:
        raise Q2CError(
            "this command acts as a user: give your personal access token with --token or "
            "Q2C_TOKEN (create one on the console's API tokens page, or ask an admin to run "
            "q2c users token create USER)"
        )
    with engine_of(ctx) as engine:
        who = authenticate_token(engine, token, ctx.command_path)
        ctx.meta["q2c.token_id"] = who.token_id  # tokens made with it are its children
        if claimed and claimed != who.user.username:
            raise Q2CError(
                f"--as {claimed} does not match the token, which is {who.user.username}'s"
            )
        yield engine, who.user.username


@contextmanager
def engine_of(ctx: click.Context) -> Iterator[Engine]:
    from q2c.database import create_db_engine, database_url
    from q2c.privileges import warn_if_privileged

    settings: Settings = ctx.find_root().obj
    with database_url(settings) as url:
        warn_if_privileged(url)
        engine = create_db_engine(url, settings)
        try:
            yield engine
        finally:
            engine.dispose()


def plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return round(value.total_seconds())
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def emit(rows: Sequence[dict] | dict, columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, default=plain, indent=2))
        return
    rows = [rows] if isinstance(rows, dict) else rows
    if not rows:
        click.echo("(none)")
        return
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def cell(value: Any) -> str:
    value = plain(value)
    text = "" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def report(changed: Sequence[int], skipped: dict[int, str], verb: str) -> None:
    click.echo(
        f"{verb} {len(changed)} exception(s)"
        + (f": {', '.join(map(str, changed))}" if changed else "")
    )
    for exception_id, reason in skipped.items():
        click.echo(f"  skipped {exception_id}: {reason}")
    if skipped and not changed:
        sys.exit(2)

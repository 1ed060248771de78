"""`q2c silences`: silence notifications for a while (never the exceptions themselves),
list the silences, and end one early; acting as the person whose token is given, checked
and audited as in the console."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import click

from cli._common import AS_JSON, acting, acting_session, emit
from q2c.errors import Q2CError

COLUMNS = ("id", "matchers", "starts_at", "ended_at", "reason", "author", "expired_by")


@click.group()
def silences() -> None:
    """Silences: what they match suppresses notifications, logged as suppressed."""


def _matchers(pairs: tuple[str, ...]) -> dict[str, list[str]]:
    """`key=value` pairs as matchers; a key given twice matches any of its values."""
    found: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise Q2CError(f"--match {pair!r}: give KEY=VALUE, for example system=erp")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def _rows(found: list) -> list[dict]:
    return [{**asdict(silence), "ended_at": silence.ended_at} for silence in found]


@silences.command("add")
@acting
@AS_JSON
@click.option("--match", "pairs", multiple=True, required=True, metavar="KEY=VALUE")
@click.option("--for", "span", required=True, help="How long, e.g. 2h, 30m, 1d.")
@click.option("--reason", required=True)
@click.pass_context
def silences_add(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    as_json: bool,
    pairs: tuple[str, ...],
    span: str,
    reason: str,
) -> None:
    """Silence what every --match matches (e.g. --match system=erp) --for a while."""
    from alerts.silences import create_silence
    from q2c.durations import parse_duration

    now = datetime.now(UTC)
    until = now + parse_duration(span)
    with acting_session(ctx, token, claimed) as (engine, actor):
        silence = create_silence(engine, actor, _matchers(pairs), until, reason, starts_at=now)
    emit(_rows([silence]), COLUMNS, as_json)


@silences.command("list")
@acting
@AS_JSON
@click.option("--all", "everything", is_flag=True, help="Ended ones too.")
@click.pass_context
def silences_list(
    ctx: click.Context, token: str | None, claimed: str | None, as_json: bool, everything: bool
) -> None:
    """The silences in force or to come (--all: ended ones too), latest first."""
    from alerts.silences import list_silences

    with acting_session(ctx, token, claimed) as (engine, actor):
        found = list_silences(engine, actor, include_ended=everything)
    emit(_rows(found), COLUMNS, as_json)


@silences.command("expire")
@acting
@AS_JSON
@click.argument("silence_id", type=int)
@click.pass_context
def silences_expire(
    ctx: click.Context, token: str | None, claimed: str | None, as_json: bool, silence_id: int
) -> None:
    """End silence SILENCE_ID now."""
    from alerts.silences import expire_silence

    with acting_session(ctx, token, claimed) as (engine, actor):
        silence = expire_silence(engine, actor, silence_id)
    emit(_rows([silence]), COLUMNS, as_json)

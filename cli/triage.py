"""`q2c exceptions`: triage from a terminal, as in the console."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from cli._common import AS_JSON, acting, acting_session, cell, emit, report
from q2c.vocabulary import EXCEPTION_STATUSES, IMPACTS


@click.group()
def exceptions() -> None:
    """Triage exceptions: list, show, assign, start, comment, resolve, ignore."""


@exceptions.command("list")
@acting
@AS_JSON
@click.option(
    "--status",
    multiple=True,
    type=click.Choice(EXCEPTION_STATUSES),
    help="Status (repeatable) [default: open ones].",
)
@click.option("--process")
@click.option("--stage")
@click.option("--system")
@click.option("--impact", multiple=True, type=click.Choice(IMPACTS), help="Repeatable.")
@click.option("--owner")
@click.option("--search", help="Text in message, error type, correlation ID or business keys.")
@click.option("--regressed", is_flag=True, help="Only those failing again after a resolve.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.pass_context
def exceptions_list(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    as_json: bool,
    status: tuple[str, ...],
    process: str | None,
    stage: str | None,
    system: str | None,
    impact: tuple[str, ...],
    owner: str | None,
    search: str | None,
    regressed: bool,
    limit: int,
) -> None:
    """List exceptions, most urgent first."""
    from q2c.vocabulary import OPEN_STATUSES
    from queries.exceptions import ExceptionFilter, count_exceptions, list_exceptions
    from queries.users import authorize

    filters = ExceptionFilter(
        statuses=status or OPEN_STATUSES,
        process=process,
        stage=stage,
        system=system,
        impact=impact,
        owner=owner,
        search=search,
        regressed=regressed,
    )
    with acting_session(ctx, token, claimed) as (engine, actor):
        authorize(engine, actor, "exceptions.view")
        rows = list_exceptions(engine, filters, limit)
        matching = count_exceptions(engine, filters) if len(rows) == limit else len(rows)
    if matching > len(rows):  # said on stderr, so that piped output stays rows only
        click.echo(f"{len(rows):,} of {matching:,} matching exceptions shown (--limit)", err=True)
    emit(
        rows,
        (
            "id",
            "impact",
            "status",
            "regressed_from",
            "owner",
            "process",
            "stage",
            "kind",
            "correlation_id",
            "amount",
            "age",
            "message",
        ),
        as_json,
    )


@exceptions.command("show")
@acting
@AS_JSON
@click.argument("exception_id", type=int)
@click.pass_context
def exceptions_show(
    ctx: click.Context, token: str | None, claimed: str | None, as_json: bool, exception_id: int
) -> None:
    """Show one exception with its failures, history, timeline, dead letters and replays."""
    from queries.exceptions import exception_detail
    from queries.users import authorize

    with acting_session(ctx, token, claimed) as (engine, actor):
        authorize(engine, actor, "exceptions.view")
        detail = exception_detail(engine, exception_id)
    if as_json:
        emit(detail, (), True)
        return
    for key, value in detail.items():
        if not isinstance(value, list):
            click.echo(f"{key:>15}: {cell(value)}")
    for section in ("occurrences", "timeline", "history", "dead_letters", "replays"):
        click.echo(f"\n{section}:")
        rows = detail[section]
        emit(rows, tuple(rows[0]) if rows else ("-",), False)


@exceptions.command("assign")
@acting
@click.argument("exception_ids", type=int, nargs=-1, required=True)
@click.option("--to", "owner", required=True, help="The new owner (a console user).")
@click.option("--comment")
@click.pass_context
def exceptions_assign(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    exception_ids: tuple[int, ...],
    owner: str,
    comment: str | None,
) -> None:
    """Assign exceptions to a user."""
    from queries.exceptions import assign

    with acting_session(ctx, token, claimed) as (engine, actor):
        result = assign(engine, actor, exception_ids, owner, comment)
    report(result.changed, result.skipped, f"assigned to {owner}:")


@exceptions.command("start")
@acting
@click.argument("exception_ids", type=int, nargs=-1, required=True)
@click.pass_context
def exceptions_start(
    ctx: click.Context, token: str | None, claimed: str | None, exception_ids: tuple[int, ...]
) -> None:
    """Start work on exceptions: they become in_progress, yours unless someone owns them."""
    from queries.exceptions import start_work

    with acting_session(ctx, token, claimed) as (engine, actor):
        result = start_work(engine, actor, exception_ids)
    report(result.changed, result.skipped, "started work on")


@exceptions.command("comment")
@acting
@click.argument("exception_id", type=int)
@click.argument("text")
@click.pass_context
def exceptions_comment(
    ctx: click.Context, token: str | None, claimed: str | None, exception_id: int, text: str
) -> None:
    """Add a comment to an exception."""
    from queries.exceptions import comment

    with acting_session(ctx, token, claimed) as (engine, actor):
        result = comment(engine, actor, exception_id, text)
    report(result.changed, result.skipped, "commented on")


@exceptions.command("resolve")
@click.argument("exception_ids", type=int, nargs=-1, required=True)
@click.option("--reason", required=True)
@acting
@click.pass_context
def exceptions_resolve(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    exception_ids: tuple[int, ...],
    reason: str,
) -> None:
    """Resolve exceptions, with the reason."""
    from queries.exceptions import close_exceptions, record_breaks

    with acting_session(ctx, token, claimed) as (engine, actor):
        result = close_exceptions(engine, actor, exception_ids, "resolved", reason)
        breaks = record_breaks(engine, result.changed)
    if breaks:  # as the console's confirmation says
        click.echo(
            f"note: {breaks} of them {'is a break' if breaks == 1 else 'are breaks'} between "
            "the systems of record: while the records still differ, the reconciliation's next "
            "run opens it again; to keep a known difference closed, accept it "
            "(q2c reconcile accept RUN_ID KEY BREAK_TYPE --reason …)",
            err=True,
        )
    report(result.changed, result.skipped, "resolved")


@exceptions.command("ignore")
@click.argument("exception_ids", type=int, nargs=-1, required=True)
@click.option("--reason", required=True)
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    help="Reopen them at this moment (UTC) [default: ignored for good].",
)
@click.option("--until-recurs", is_flag=True, help="Reopen one when its failure happens again.")
@acting
@click.pass_context
def exceptions_ignore(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    exception_ids: tuple[int, ...],
    reason: str,
    until: datetime | None,
    until_recurs: bool,
) -> None:
    """Ignore exceptions, with the reason: for good, until a moment, or until they recur."""
    from queries.exceptions import close_exceptions

    moment = None if until is None else until.replace(tzinfo=UTC)
    with acting_session(ctx, token, claimed) as (engine, actor):
        result = close_exceptions(
            engine,
            actor,
            exception_ids,
            "ignored",
            reason,
            until=moment,
            until_recurs=until_recurs,
        )
    report(result.changed, result.skipped, "ignored")

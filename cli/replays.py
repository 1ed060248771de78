"""`q2c dead-letters` and `q2c replay`: inspect dead letters, request replays and follow
them, or deliver the due ones now."""

from __future__ import annotations

import sys

import click

from cli._common import AS_JSON, acting, acting_session, cell, emit
from q2c.errors import Q2CError
from q2c.settings import Settings


@click.group("dead-letters")
def dead_letters() -> None:
    """Inspect dead-lettered messages."""


@dead_letters.command("list")
@acting
@AS_JSON
@click.option("--status", type=click.Choice(["dead", "replay_pending", "replayed", "discarded"]))
@click.option("--search")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.pass_context
def dead_letters_list(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    as_json: bool,
    status: str | None,
    search: str | None,
    limit: int,
) -> None:
    """List dead letters, newest first, with their latest replay."""
    from queries.replays import list_dead_letters

    with acting_session(ctx, token, claimed) as (engine, actor):
        rows = list_dead_letters(engine, actor, status, search, limit)
    emit(
        rows,
        (
            "id",
            "occurred_at",
            "correlation_id",
            "stage",
            "status",
            "target_url",
            "replay_status",
            "error_message",
        ),
        as_json,
    )


@dead_letters.command("discard")
@acting
@click.argument("dead_letter_ids", type=int, nargs=-1, required=True)
@click.option("--reason", required=True, help="Why (it goes into the audit trail).")
@click.pass_context
def dead_letters_discard(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    dead_letter_ids: tuple[int, ...],
    reason: str,
) -> None:
    """Give up on dead letters: they will not be replayed (on-call)."""
    from queries.replays import discard_dead_letters

    with acting_session(ctx, token, claimed) as (engine, actor):
        result = discard_dead_letters(engine, actor, dead_letter_ids, reason)
    for letter in result.changed:
        click.echo(f"dead letter {letter}: discarded")
    for letter, why in result.skipped.items():
        click.echo(f"dead letter {letter}: left alone: {why}")
    if result.skipped and not result.changed:
        sys.exit(2)


@dead_letters.command("show")
@acting
@AS_JSON
@click.argument("dead_letter_id", type=int)
@click.pass_context
def dead_letters_show(
    ctx: click.Context, token: str | None, claimed: str | None, as_json: bool, dead_letter_id: int
) -> None:
    """Show one dead letter: payload, headers, target and replays."""
    from queries.replays import dead_letter_detail

    with acting_session(ctx, token, claimed) as (engine, actor):
        detail = dead_letter_detail(engine, actor, dead_letter_id)
    if as_json:
        emit(detail, (), True)
        return
    for key, value in detail.items():
        if key not in ("replays", "payload"):
            click.echo(f"{key:>16}: {cell(value)}")
    click.echo(f"\npayload:\n{detail['payload']}\n\nreplays:")
    emit(
        detail["replays"],
        ("id", "requested_by", "requested_at", "status", "attempts", "response_code", "error"),
        False,
    )


@click.group()
def replay() -> None:
    """Request replays of dead letters and follow them."""


@replay.command("request")
@acting
@click.argument("dead_letter_ids", type=int, nargs=-1)
@click.option(
    "--filter",
    "search",
    help="Replay every dead (not yet replayed) letter matching "
    "this text in correlation ID, target or error.",
)
@click.option("--payload-file", type=click.File("r"), help="Send this payload instead.")
@click.option("--force", is_flag=True, help="Replay even if already replayed successfully.")
@click.pass_context
def replay_request(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    dead_letter_ids: tuple[int, ...],
    search: str | None,
    payload_file,
    force: bool,
) -> None:
    """Queue replays of DEAD_LETTER_IDS (or of every one --filter matches; for many, a
    rate-limited `q2c replay redrive` is kinder to the targets)."""
    from queries.redrives import matching_letters
    from queries.replays import request_replays

    if not dead_letter_ids and not search:
        raise Q2CError("name dead letter IDs or give --filter")
    settings: Settings = ctx.find_root().obj
    with acting_session(ctx, token, claimed) as (engine, actor):
        ids = list(dead_letter_ids)
        if search:
            ids += matching_letters(engine, actor, search)
        outcome = request_replays(
            engine,
            actor,
            ids,
            settings.allowed_replay_hosts,
            payload_file.read() if payload_file else None,
            force,
        )
    for letter, replay_id in outcome.created.items():
        click.echo(f"dead letter {letter}: replay {replay_id} queued")
    for letter, replay_id in outcome.existing.items():
        click.echo(f"dead letter {letter}: replay {replay_id} already under way")
    for letter, reason in outcome.refused.items():
        click.echo(f"dead letter {letter}: refused: {reason}")
    if outcome.refused and not (outcome.created or outcome.existing):
        sys.exit(2)


@replay.command("redrive")
@acting
@click.option("--filter", "search", help="Text in correlation ID, target or error (else all).")
@click.option("--rate", type=float, default=5.0, show_default=True, help="Replays a second.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; change nothing.")
@click.pass_context
def replay_redrive(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    search: str | None,
    rate: float,
    dry_run: bool,
) -> None:
    """Replay every dead letter --filter matches, at most --rate a second."""
    from queries.redrives import preview_redrive, start_redrive

    settings: Settings = ctx.find_root().obj
    with acting_session(ctx, token, claimed) as (engine, actor):
        if dry_run:
            preview = preview_redrive(engine, actor, search, settings.allowed_replay_hosts)
            click.echo(
                f"{preview.matching} dead letter(s) match; {len(preview.replayable)} would be "
                f"replayed, {len(preview.replayable) / rate:.0f} s at {rate:g} a second"
            )
            for why, count in preview.refused.items():
                click.echo(f"  {count} left alone: {why}")
            return
        redrive, outcome = start_redrive(engine, actor, search, settings.allowed_replay_hosts, rate)
    click.echo(f"redrive {redrive.id}: {redrive.total} replay(s) queued at {rate:g} a second")
    for letter, why in outcome.refused.items():
        click.echo(f"dead letter {letter}: refused: {why}")


@replay.command("cancel")
@acting
@click.argument("redrive_id", type=int)
@click.pass_context
def replay_cancel(
    ctx: click.Context, token: str | None, claimed: str | None, redrive_id: int
) -> None:
    """Cancel the replays of a redrive that are still pending."""
    from queries.redrives import cancel_redrive

    with acting_session(ctx, token, claimed) as (engine, actor):
        cancelled = cancel_redrive(engine, actor, redrive_id)
    click.echo(f"redrive {redrive_id}: {cancelled} pending replay(s) cancelled")


@replay.command("status")
@acting
@AS_JSON
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_context
def replay_status_cmd(
    ctx: click.Context, token: str | None, claimed: str | None, as_json: bool, limit: int
) -> None:
    """Show the latest replays and their outcomes."""
    from queries.replays import replay_status

    with acting_session(ctx, token, claimed) as (engine, actor):
        rows = replay_status(engine, actor, limit)
    emit(
        rows,
        (
            "id",
            "dead_letter_id",
            "requested_by",
            "requested_at",
            "status",
            "attempts",
            "response_code",
            "target_url",
            "error",
        ),
        as_json,
    )


@replay.command("run-once")
@click.pass_context
def replay_run_once(ctx: click.Context) -> None:
    """Deliver every replay that is due now, once, and print the outcome."""
    from q2c.database import database_url
    from q2c.privileges import warn_if_privileged
    from replay.dispatcher import Dispatcher

    settings: Settings = ctx.find_root().obj
    with database_url(settings) as url:
        warn_if_privileged(url)
        dispatcher = Dispatcher(url, settings)
        try:
            report = dispatcher.run_once()
        finally:
            dispatcher.close()
    click.echo(
        f"claimed {report.claimed}: {len(report.succeeded)} succeeded, "
        f"{len(report.retrying)} will retry, {len(report.failed)} failed"
    )
    for replay_id, reason in report.reasons.items():
        click.echo(f"  replay {replay_id} failed: {reason}")

"""`q2c reconcile`: check a reconcile.yaml and its sources' connections, run reconciliations
now, and list the runs and their breaks. The reconcile package is imported by the commands
that use it, so that other commands start without it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import psycopg

from cli._common import AS_JSON, acting, acting_session, emit, plain
from q2c.errors import Q2CError
from q2c.settings import Settings
from q2c.vocabulary import BREAK_KINDS

if TYPE_CHECKING:
    from reconcile.config import ReconcileConfig

CONFIG = click.option(
    "--config",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="reconcile.yaml [default: Q2C_RECONCILE_CONFIG].",
)


@click.group()
def reconcile() -> None:
    """Reconciliation against the systems of record (reconcile.yaml)."""


def _config(ctx: click.Context, path: Path | None) -> ReconcileConfig:
    from reconcile.load import load_reconcile_config

    settings: Settings = ctx.find_root().obj
    chosen = path or settings.reconcile_config
    if chosen is None:
        raise Q2CError("no reconcile.yaml: give --config FILE or set Q2C_RECONCILE_CONFIG")
    return load_reconcile_config(chosen)


@reconcile.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def reconcile_check(ctx: click.Context, path: Path | None) -> None:
    """Validate PATH (default: Q2C_RECONCILE_CONFIG, else the shipped example), then test
    each source's connection; exit status 2 if one cannot be reached."""
    from reconcile.config import schedule_label
    from reconcile.load import load_reconcile_config
    from reconcile.sources import SourceError

    config = load_reconcile_config(path or ctx.find_root().obj.reconcile_config)
    count = len(config.reconciliations)
    click.echo(f"ok: {count} reconciliation{'s' * (count != 1)}")
    unreachable = 0
    for name, recon in config.reconciliations.items():
        compared = ", ".join(recon.compare) or "nothing"
        click.echo(
            f"{name}: {recon.object} by {recon.key}, {schedule_label(recon.schedule)}; "
            f"compares {compared}"
        )
        for source_name, source in recon.sources.items():
            try:
                reached = source.probe(os.environ)
            except SourceError as exc:
                unreachable += 1
                reached = f"FAILED: {exc}"
            click.echo(f"  {source_name} ({source.type}): {reached}")
    if unreachable:
        click.echo(f"{unreachable} source(s) cannot be read", err=True)
        sys.exit(2)


@reconcile.command("run")
@click.argument("name", required=False)
@CONFIG
@AS_JSON
@click.pass_context
def reconcile_run(ctx: click.Context, name: str | None, path: Path | None, as_json: bool) -> None:
    """Run reconciliation NAME now (all of them when omitted) and print what each found:
    with --json one object per run (a list when NAME is omitted). Exit status 2 if a run
    failed. A service command: no token."""
    from q2c.database import database_url
    from reconcile.engine import run_reconciliation

    config = _config(ctx, path)
    if name is not None and name not in config.reconciliations:
        known = ", ".join(config.reconciliations) or "none are configured"
        raise Q2CError(f"no reconciliation {name!r} (reconciliations: {known})")
    chosen = [name] if name else list(config.reconciliations)
    settings: Settings = ctx.find_root().obj
    reports = []
    with database_url(settings) as url, psycopg.connect(url, autocommit=True) as conn:
        for each in chosen:
            reports.append(run_reconciliation(conn, each, config.reconciliations[each], os.environ))
    documents = [report.document() for report in reports]
    if as_json:
        click.echo(json.dumps(documents[0] if name else documents, indent=2))
    for report in reports if not as_json else ():
        click.echo(report.summary())
    if any(report.status == "failed" for report in reports):
        sys.exit(2)


@reconcile.command("runs")
@acting
@AS_JSON
@click.option("--name", "reconciliation", help="Only this reconciliation's runs.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_context
def reconcile_runs(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    as_json: bool,
    reconciliation: str | None,
    limit: int,
) -> None:
    """The runs, newest first, with their counts and status. Needs finance_ops."""
    from queries.reconciliation import list_runs

    with acting_session(ctx, token, claimed) as (engine, actor):
        rows = list_runs(engine, actor, reconciliation, limit)
    if not as_json:
        for row in rows:
            row["breaks"] = sum(row["breaks"].values())
            row["error"] = row["error"] and f"{row['error']} ({row['error_at'] or '-'})"
    columns = ["run_id", "reconciliation", "status", "started_at", "checked", "matched"]
    emit(rows, [*columns, "pending", "accuracy", "breaks", "error"], as_json)


@reconcile.command("breaks")
@acting
@AS_JSON
@click.option("--run", "run_id", type=int, help="This run's breaks [default: the latest runs'].")
@click.option("--reconciliation", "name", help="Only this reconciliation's.")
@click.option(
    "--kind",
    type=click.Choice(BREAK_KINDS),
    help="Only breaks of this kind.",
)
@click.option("--field", help="Only mismatches of this field.")
@click.option("--key", "search", help="Only keys containing this text.")
@click.option("--limit", type=click.IntRange(min=1), default=500, show_default=True)
@click.pass_context
def reconcile_breaks(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    as_json: bool,
    run_id: int | None,
    name: str | None,
    kind: str | None,
    field: str | None,
    search: str | None,
    limit: int,
) -> None:
    """The breaks of a run (default: each reconciliation's latest successful run), with
    the exception each opened or kept; --json adds the records side by side. Needs
    finance_ops."""
    from queries.reconciliation import BreakFilter, list_breaks, list_runs

    chosen = BreakFilter(run_id, name, kind, field, search)
    with acting_session(ctx, token, claimed) as (engine, actor):
        rows = list_breaks(engine, actor, limit=limit, filters=chosen)
        if run_id is not None and not rows and not list_runs(engine, actor, run_id=run_id):
            raise Q2CError(f"no reconciliation run {run_id} (q2c reconcile runs lists them)")
    if as_json:
        click.echo(json.dumps(rows, default=plain, indent=2))
        return
    columns = ["run_id", "reconciliation", "key", "break_type", "exception_id"]
    emit(rows, [*columns, "exception_status", "accepted", "correlation_id"], as_json)


@reconcile.command("accept")
@acting
@click.argument("run_id", type=int)
@click.argument("key")
@click.argument("break_type")
@click.option("--reason", required=True, help="Why the difference is known and accepted.")
@click.pass_context
def reconcile_accept(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    run_id: int,
    key: str,
    break_type: str,
    reason: str,
) -> None:
    """Accept break BREAK_TYPE of KEY in run RUN_ID as a known difference: its exception
    is resolved with the reason, and it is not raised again while the records are
    unchanged. Audited. Needs finance_ops."""
    from queries.reconciliation import accept_difference

    with acting_session(ctx, token, claimed) as (engine, actor):
        done = accept_difference(engine, actor, run_id, key, break_type, reason)
    resolved = done.resolved_exception_id
    click.echo(
        f"accepted {break_type} of {key} (acceptance {done.acceptance_id})"
        + (f"; exception {resolved} resolved" if resolved else "")
    )

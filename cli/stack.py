"""`q2c console` (and, through `python -m demo`, the demo): prepare the database, start the
processes under the supervisor, and print where to open the console."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import click

from cli.supervisor import Child, Supervisor, streamlit_child
from q2c.settings import Settings


@dataclass
class Companions:
    """What a stack runs beside the console (the demo's collector, scheduler and sandbox),
    the environment they and the console share, and the banner printed once all run."""

    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    banner: Callable[[str], str] = lambda url: f"Q2C console: {url}  (Ctrl-C stops it)"


def run_stack(
    settings: Settings,
    port: int | None,
    companions: Callable[[str], Companions] | None = None,
) -> None:
    """Prepare the database, then run the console (and what `companions`, given the
    runtime database URL, adds beside it) until Ctrl-C."""
    from q2c.database import database_urls
    from q2c.schema import prepare_database

    # Ctrl-C while starting must still stop what has started; the supervisor takes over later.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    port = port or settings.console_port
    supervisor = Supervisor()
    try:
        with database_urls(settings) as urls:
            url = urls.runtime
            for problem in prepare_database(urls, settings).problems:
                click.echo(f"warning: {problem}", err=True)
            try:
                beside = companions(url) if companions else Companions()
                for child in beside.children:
                    child.env = {**child.env, **beside.env}
                    supervisor.start(child)
                console = streamlit_child(url, settings.console_host, port)
                console.env = {**console.env, **beside.env}
                supervisor.start(console)
                click.echo(beside.banner(f"http://{settings.console_host}:{port}"))
                supervisor.wait()
            finally:
                supervisor.stop()
    except KeyboardInterrupt:
        pass
    click.echo("stopped")

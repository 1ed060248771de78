"""`python -m demo` (what `make demo` runs): the whole demo on the embedded database (or
DATABASE_URL) until Ctrl-C. It migrates the database, seeds one login per role, starts the
collector, the scheduler, the sandbox and the console, and prints where to open it.

The demo sits beside the top of the house: it adds this command to the `q2c` command line
and runs the command line's stack with its own companions beside the console."""

from __future__ import annotations

import base64
import secrets
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import click

from cli.main import main as command_line
from cli.stack import Companions, run_stack
from cli.supervisor import collector_child, sandbox_child, scheduler_child
from demo import sandbox
from demo.records_api import ERP_TOKEN_ENV
from demo.seed import DEMO_USERS, has_history, seed_users
from q2c.database import create_db_engine
from q2c.settings import Settings
from queries.tokens import create_token

HISTORY_DAYS = 3  # backfilled on the first run
ALERTS_TEMPLATE = Path(__file__).with_name("alerts.yaml")
RECONCILE_TEMPLATE = Path(__file__).with_name("reconcile.yaml")


def companions(settings: Settings, url: str, chaos: bool = False) -> Companions:
    """Seed the logins, then the demo's processes beside the console: they share an
    environment in which the sandbox is an allowed replay target. `chaos`: the sandbox
    sends the heavy fault mix instead of the realistic one."""
    engine = create_db_engine(url, settings)
    try:
        seed_users(engine)
        history = 0 if has_history(engine) else HISTORY_DAYS
        token, _ = create_token(engine, "oncall", "oncall", timedelta(days=1), "make demo")
    finally:
        engine.dispose()
    host, port = settings.collector_host, settings.collector_port
    allowed = ",".join(
        filter(None, [settings.replay_allowed_hosts, f"127.0.0.1:{settings.demo_sandbox_port}"])
    )
    alerting = alerting_environment(settings.demo_sandbox_port)
    data_dir = settings.data_dir.expanduser().resolve() / "demo"
    reconciling = reconciliation_environment(settings.demo_sandbox_port, data_dir)
    return Companions(
        children=[
            collector_child(url, host, port),
            # Healthy once its history is sent and exported: the scheduler's first
            # evaluation and reconciliations see all of it.
            sandbox_child(
                sandbox,
                f"http://{host}:{port}",
                settings.demo_sandbox_port,
                settings.demo_rate,
                history,
                ["--data-dir", str(data_dir), *(["--chaos"] if chaos else [])],
            ),
            scheduler_child(url),
        ],
        env={"Q2C_REPLAY_ALLOWED_HOSTS": allowed, **alerting, **reconciling},
        banner=lambda console: _banner(settings, console, token, url),
    )


def alerting_environment(sandbox_port: int) -> dict[str, str]:
    """The demo's alerts.yaml, its channels pointed at the sandbox's notification sink
    (written beside the system's temporary files), and the channels' secrets."""
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    config = Path(tempfile.gettempdir()) / f"q2c-demo-alerts-{sandbox_port}.yaml"
    config.write_text(ALERTS_TEMPLATE.read_text().replace("{sandbox}", sandbox))
    return {
        "Q2C_ALERTS_CONFIG": str(config),
        "Q2C_OPS_HOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "Q2C_PD_ROUTING_KEY": secrets.token_hex(16),
        "Q2C_SLACK_WEBHOOK_URL": f"{sandbox}/sink/slack/ops",
        "Q2C_FINANCE_SLACK_WEBHOOK_URL": f"{sandbox}/sink/slack/finance",
    }


def reconciliation_environment(sandbox_port: int, data_dir: Path) -> dict[str, str]:
    """The demo's reconcile.yaml, written into `data_dir`, its sources pointed at the
    sandbox's list endpoints and the billing export it writes under `data_dir`/exports,
    and the token the sandbox's ERP and the reconciliation share."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "reconcile.yaml"
    text = RECONCILE_TEMPLATE.read_text().replace("{sandbox}", f"http://127.0.0.1:{sandbox_port}")
    config.write_text(text.replace("{exports}", str(data_dir / "exports")))
    return {"Q2C_RECONCILE_CONFIG": str(config), ERP_TOKEN_ENV: secrets.token_urlsafe(24)}


def _banner(settings: Settings, console: str, token: str, url: str) -> str:
    collector = f"http://{settings.collector_host}:{settings.collector_port}"
    logins = [f"    {user:<8} {password:<18} ({role})" for user, role, password in DEMO_USERS]
    return "\n".join(
        [
            "",
            "  Q2C Console demo is running.",
            f"  Open the console:   {console}",
            f"  OTLP/HTTP endpoint: {collector}  (OTEL_EXPORTER_OTLP_ENDPOINT)",
            f"  Sandbox targets:    http://127.0.0.1:{settings.demo_sandbox_port}",
            f"  Alerts sent:        http://127.0.0.1:{settings.demo_sandbox_port}/sink/"
            "  (and the console's Alerts page)",
            "  Demo logins (user, password, role):",
            *logins,
            "  CLI as oncall, for a day (in another terminal, while the demo runs):",
            f"    export DATABASE_URL='{url}'",
            f"    export Q2C_TOKEN={token}",
            "  Press Ctrl-C to stop everything.",
            "",
        ]
    )


@command_line.command("demo")
@click.option("--port", type=int, help="Console port [default: Q2C_CONSOLE_PORT].")
@click.option(
    "--chaos",
    is_flag=True,
    help="Send the heavy fault mix: every SLO soon pages, exceptions by the hundred.",
)
@click.pass_context
def demo(ctx: click.Context, port: int | None, chaos: bool) -> None:
    """Start the whole demo on the embedded database (or DATABASE_URL) until Ctrl-C."""
    settings = ctx.obj
    run_stack(settings, port, lambda url: companions(settings, url, chaos))


if __name__ == "__main__":
    command_line(["demo", *sys.argv[1:]], prog_name="python -m demo")

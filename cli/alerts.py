"""`q2c alerts`: check an alerts.yaml (and whether this environment holds its channels'
secrets), and send a test notification through one channel. The alerts package is imported
by the commands that use it, so that other commands start without it."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
import psycopg

from cli._common import AS_JSON, acting, acting_session, emit
from q2c.durations import duration_text
from q2c.settings import Settings

if TYPE_CHECKING:
    from alerts.config import AlertsConfig


CONFIG = click.option(
    "--config",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="alerts.yaml [default: Q2C_ALERTS_CONFIG, else the shipped one].",
)


@click.group()
def alerts() -> None:
    """Alerting's configuration (alerts.yaml) and its channels."""


def _summary(config: AlertsConfig, now: datetime) -> list[str]:
    from q2c.cron import next_run

    counts = (
        (config.channels, "channel"),
        (config.owners, "ownership rule"),
        (config.routes, "route"),
        (config.escalations, "escalation"),
        (config.digests, "digest"),
        (config.maintenance, "maintenance window"),
    )
    lines = [
        "ok: "
        + ", ".join(f"{len(items)} {word}{'s' * (len(items) != 1)}" for items, word in counts)
    ]
    width = max((len(name) for name in config.channels), default=0)
    lines.append("channels:")
    for name, channel in config.channels.items():
        lines.append(f"  {name:<{width}}  {channel.type:<9}  {channel.describe()}")
    lines.append("owners (the first match assigns a new exception):")
    for number, rule in enumerate(config.owners, 1):
        lines.append(f"  {number}. {rule.match.describe()} → {rule.owner}")
    lines.append("routes (every match notifies, unless one says continue: false):")
    for number, route in enumerate(config.routes, 1):
        grouping = ", ".join(route.group_by) or "nothing"
        stop = "; stops here" if not route.continue_ else ""
        lines.append(
            f"  {number}. {route.match.describe()} → {', '.join(route.to)} "
            f"(grouped by {grouping}; wait {duration_text(route.group_wait)}, "
            f"interval {duration_text(route.group_interval)}, "
            f"repeat {duration_text(route.repeat_interval)}{stop})"
        )
    lines.append("escalations:")
    for number, step in enumerate(config.escalations, 1):
        lines.append(
            f"  {number}. {step.match.describe()} unacknowledged after "
            f"{duration_text(step.unacknowledged_after)} → {', '.join(step.to)}"
        )
    zone = config.zone
    lines.append(f"digests (times in {config.timezone}):")
    for digest in config.digests:
        upcoming = next_run(digest.schedule, zone, now).strftime("%a %Y-%m-%d %H:%M")
        lines.append(
            f"  {digest.name}: {digest.content} at '{digest.schedule}' → "
            f"{', '.join(digest.to)}; next {upcoming}"
        )
    lines.append("maintenance windows:")
    for window in config.maintenance:
        upcoming = next_run(window.schedule, zone, now).strftime("%a %Y-%m-%d %H:%M")
        lines.append(
            f"  {window.name}: {window.match.describe()} from '{window.schedule}' for "
            f"{duration_text(window.duration)}; next {upcoming}"
        )
    return lines


@alerts.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def alerts_check(ctx: click.Context, path: Path | None) -> None:
    """Validate PATH (default: Q2C_ALERTS_CONFIG, else the shipped alerts.yaml) and the
    environment variables its channels name; print what it configures.

    A variable that is not set is a warning; one set to something unusable is an error.
    Exits 1 on any error.
    """
    from alerts.check import environment_findings
    from alerts.load import load_alerts_config

    settings: Settings = ctx.find_root().obj
    config = load_alerts_config(path or settings.alerts_config)
    for line in _summary(config, datetime.now(UTC)):
        click.echo(line)
    findings = environment_findings(config, os.environ)
    for finding in findings:
        click.echo(str(finding), err=True)
    if any(finding.level == "error" for finding in findings):
        sys.exit(1)


@alerts.command("test")
@click.argument("channel")
@CONFIG
@click.pass_context
def alerts_test(ctx: click.Context, channel: str, path: Path | None) -> None:
    """Send a test notification through CHANNEL now and print whether it was delivered.

    To PagerDuty the test trigger is followed by its resolve, so no incident stays open.
    Exits 1 when a delivery failed.
    """
    from alerts.channels import open_channel
    from alerts.links import console_base
    from alerts.load import load_alerts_config
    from alerts.probe import test_notifications

    settings: Settings = ctx.find_root().obj
    config = load_alerts_config(path or settings.alerts_config)
    base = console_base(config, settings)
    sender = open_channel(config, channel, base)
    try:
        for notification in test_notifications(channel, config.channels[channel], base):
            result = sender.send(notification)
            if result.delivered:
                click.echo(f"{channel}: delivered: {result.reason}")
                continue
            later = " (sending again later may succeed)" if result.retryable else ""
            click.echo(f"{channel}: failed: {result.reason}{later}")
            sys.exit(1)
    finally:
        sender.close()


@alerts.command("run-once")
@AS_JSON
@CONFIG
@click.pass_context
def alerts_run_once(ctx: click.Context, as_json: bool, path: Path | None) -> None:
    """Record the events that are due (exceptions falling due, SLO alert states changing),
    route them, and deliver the notifications that are due, once; print what was done."""
    from alerts.links import console_base
    from alerts.load import load_alerts_config
    from alerts.run import run_once
    from alerts.watch import watch
    from q2c.database import create_db_engine, database_url
    from q2c.privileges import warn_if_privileged
    from sla.policy import load_policy

    settings: Settings = ctx.find_root().obj
    config = load_alerts_config(path or settings.alerts_config)
    policy = load_policy(settings.sla_config)
    now = datetime.now(UTC)
    with database_url(settings) as url:
        warn_if_privileged(url)
        engine = create_db_engine(url, settings)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                watched = watch(conn, engine, policy, now)
        finally:
            engine.dispose()
        report = run_once(url, config, console_base(config, settings), now, policy=policy)
    delivery = report.delivery
    outcome = {
        "overdue": watched.overdue,
        "slo_changes": watched.slo_changes,
        "assigned": {str(k): v for k, v in report.ownership.assigned.items()},
        "escalated": {str(k): v for k, v in report.escalation.escalated.items()},
        "digests": {k: v.isoformat() for k, v in report.digests.sent.items()},
        "routing_skipped": report.routing_skipped,
        "events_unpacked": report.unpacked,
        "events_routed": report.events,
        "groups": report.groups,
        "notifications": report.notifications,
        "delivered": delivery.delivered,
        "retrying": delivery.retrying,
        "failed": delivery.failed,
        "suppressed": delivery.suppressed,
        "reasons": {str(k): v for k, v in delivery.reasons.items()},
    }
    if as_json:
        click.echo(json.dumps(outcome, indent=2))
        return
    click.echo(
        f"recorded {watched.overdue} overdue exception(s) and {len(watched.slo_changes)} SLO "
        f"change(s); unpacked {report.unpacked} event(s) from the outbox, routed "
        f"{report.events} into {len(report.groups)} group(s)"
        + (" (another scheduler was routing)" if report.routing_skipped else "")
    )
    for change in watched.slo_changes:
        click.echo(f"  SLO {change}")
    for exception_id, owner in report.ownership.assigned.items():
        click.echo(f"  exception {exception_id} assigned to {owner} (ownership rules)")
    for step, escalated in report.escalation.escalated.items():
        click.echo(f"  escalation {step}: exception(s) {', '.join(map(str, escalated))}")
    for name, occurrence in report.digests.sent.items():
        click.echo(f"  digest {name} of {occurrence:%Y-%m-%d %H:%M %Z} sent")
    click.echo(
        f"notifications: {report.notifications} new; {len(delivery.delivered)} delivered, "
        f"{len(delivery.retrying)} will retry, {len(delivery.failed)} failed, "
        f"{len(delivery.suppressed)} suppressed"
    )
    for notification_id, reason in delivery.reasons.items():
        click.echo(f"  notification {notification_id}: {reason}")


@alerts.command("log")
@acting
@AS_JSON
@click.option("--channel", help="Only this channel's notifications.")
@click.option(
    "--status",
    type=click.Choice(("pending", "delivering", "delivered", "failed", "suppressed")),
    help="Only notifications in this state.",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.pass_context
def alerts_log(
    ctx: click.Context,
    token: str | None,
    claimed: str | None,
    as_json: bool,
    channel: str | None,
    status: str | None,
    limit: int,
) -> None:
    """The notification log, newest first: what was sent to which channel, when, and
    whether it was delivered, failed or suppressed, and why. Needs finance_ops."""
    from queries.alerting import LogFilter, count_notifications, list_notifications

    filters = LogFilter(channel=channel, status=status)
    with acting_session(ctx, token, claimed) as (engine, actor):
        rows = list_notifications(engine, actor, filters, limit)
        matching = count_notifications(engine, actor, filters) if len(rows) == limit else len(rows)
    if matching > len(rows):
        click.echo(f"{len(rows):,} of {matching:,} notifications shown (--limit)", err=True)
    if not as_json:  # a suppressed one's outcome is why (JSON keeps `suppressed_by` apart)
        rows = [{**row, "outcome": row["outcome"] or row["suppressed_by"]} for row in rows]
    emit(
        rows,
        ("id", "created_at", "channel", "state", "status", "attempts", "title", "outcome"),
        as_json,
    )

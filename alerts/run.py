"""One pass of alerting, as the scheduler and `q2c alerts run-once` run it: unpack the
outbox (alerts/outbox.py), give new exceptions their owners (alerts/ownership.py), file
the new events into their groups, turn the due groups into notifications, take the due
escalation steps (alerts/escalation.py), send the due digests (alerts/digest.py), and
deliver the due notifications.

Unpacking, routing, flushing, escalations and digests run once at a time across replicas (a
transaction-scoped advisory lock; a replica that finds it taken skips them), delivery on
every replica at once (each notification is claimed, alerts/delivery.py). Recording the
events of time passing (the alerting watch, alerts/watch.py) is a job of its own, not part
of this pass.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from alerts.channels import open_channel
from alerts.config import AlertsConfig
from alerts.delivery import Deliverer, DeliveryReport
from alerts.digest import DigestReport, send_digests
from alerts.escalation import EscalationReport, escalate
from alerts.flush import flush
from alerts.outbox import horizon, unpack
from alerts.ownership import OwnershipReport, assign_owners
from alerts.router import BATCH, route_batch
from q2c.settings import load_settings
from q2c.urls import sqlalchemy_url
from sla.policy import Policy, load_policy

LOCK_KEY = 0x51324341  # "Q2CA": the router's advisory lock


@dataclass
class RunReport:
    """What one pass did. `routing_skipped`: another replica was routing, so this one only
    delivered. `unpacked`: events written from the outbox's rows; `events`: events routed.
    `groups`: the groups events were filed into; `told` those notified, and
    `closed` those that ended (resolved, or their route is gone)."""

    routing_skipped: bool = False
    unpacked: int = 0
    events: int = 0
    groups: list[int] = field(default_factory=list)
    notifications: int = 0
    told: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    ownership: OwnershipReport = field(default_factory=OwnershipReport)
    escalation: EscalationReport = field(default_factory=EscalationReport)
    digests: DigestReport = field(default_factory=DigestReport)


class Alerting:
    """The alerting of the database at `url` as `config` sets it, its messages linking
    into the console at `console_url` (alerts.links.console_base). Channels are opened
    (their secrets read from `environ`) once; keep one for the life of a process, so that
    channel rate limits hold across passes, and `close` it at the end."""

    def __init__(
        self,
        url: str,
        config: AlertsConfig,
        console_url: str,
        environ: Mapping[str, str] = os.environ,
        rates: Mapping[str, float] | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.url, self.config, self.console_url = url, config, console_url
        self._policy = policy
        channels = {
            name: open_channel(config, name, console_url, environ) for name in config.channels
        }
        self.deliverer = Deliverer(url, config, channels, rates)
        # The audit trail's writer speaks SQLAlchemy; a pass needs one connection briefly.
        self.engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)

    def run_once(self, now: datetime | None = None) -> RunReport:
        """Route, flush and deliver as of `now` (default: the current time). Never raises
        for a channel's failure: that is recorded in the notification log and reported."""
        now = now or datetime.now(UTC)
        report = RunReport()
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                # A new exception's opening is unpacked before the ownership rules, and
                # the assignments they make before routing, so both are told together.
                unpacked = self._unpack(conn, report)
                if unpacked:
                    report.ownership = assign_owners(self.engine, self.config)
                    unpacked = self._unpack(conn, report)
                if unpacked:
                    self._route_and_flush(conn, now, report)
                else:
                    report.routing_skipped = True
        finally:  # what is due is delivered even if routing failed
            report.delivery = self.deliverer.run_once(now)
        return report

    def _unpack(self, conn: psycopg.Connection, report: RunReport) -> bool:
        """Unpack the outbox rows committed so far, BATCHES a transaction; False when
        another replica holds the router's lock."""
        up_to, more = horizon(conn), True
        while more:
            with conn.transaction():
                if not _locked(conn):
                    return False
                written, more = unpack(conn, up_to)
            report.unpacked += written
        return True

    def _route_and_flush(self, conn: psycopg.Connection, now: datetime, report: RunReport) -> None:
        while True:
            with conn.transaction():
                if not _locked(conn):
                    report.routing_skipped = True
                    return
                routed = route_batch(conn, self.config, now)
            report.events += routed.events
            report.groups.extend(sorted(set(routed.groups) - set(report.groups)))
            if routed.events < BATCH:
                break
        with conn.transaction():
            if not _locked(conn):
                report.routing_skipped = True
                return
            flushed = flush(conn, self.config, self.console_url, now)
            report.escalation = escalate(conn, self.config, self.console_url, now)
            report.digests = send_digests(
                conn, self.engine, self.config, self.console_url, now, self.policy
            )
        report.notifications = flushed.notifications
        report.told, report.closed = flushed.told, flushed.closed

    def policy(self) -> Policy:
        """sla.yaml, for the KPI digests: as given, else Q2C_SLA_CONFIG's, read when first
        needed (a pass that sends no KPI digest never reads it)."""
        if self._policy is None:
            self._policy = load_policy(load_settings().sla_config)
        return self._policy

    def close(self) -> None:
        """Release the channels and the engine."""
        self.deliverer.close()
        self.engine.dispose()


def run_once(
    url: str,
    config: AlertsConfig,
    console_url: str,
    now: datetime | None = None,
    environ: Mapping[str, str] = os.environ,
    policy: Policy | None = None,
) -> RunReport:
    """One pass (see Alerting.run_once) with channels opened for it alone."""
    alerting = Alerting(url, config, console_url, environ, policy=policy)
    try:
        return alerting.run_once(now)
    finally:
        alerting.close()


def _locked(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,)).fetchone()
    return bool(row and row[0])

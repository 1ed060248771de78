"""`q2c scheduler`: runs the SLA evaluation, the alerting watch, alerting's routing and
delivery (once Q2C_ALERTS_CONFIG names an alerts.yaml), each reconciliation on its schedule
(once Q2C_RECONCILE_CONFIG names a reconcile.yaml), the replay dispatcher, the pruning of
old alerting rows and reconciliation runs, and partition maintenance on APScheduler, in its
own process.

Replicas may run side by side: every job takes a transaction-scoped advisory lock inside
its work, so a window is never done twice, and a job that finds the lock taken skips.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from alerts.links import console_base
from alerts.load import load_alerts_config
from alerts.prune import prune
from alerts.run import Alerting
from alerts.watch import watch
from q2c.cron import cron_trigger
from q2c.database import create_db_engine
from q2c.errors import Q2CError
from q2c.schema import maintain_configured_partitions
from q2c.settings import Settings
from q2c.stop_request import StopRequest
from reconcile.config import ReconcileConfig, Reconciliation
from reconcile.engine import run_reconciliation
from reconcile.load import load_reconcile_config
from reconcile.prune import prune as prune_runs
from replay.dispatcher import Dispatcher
from sla.evaluate import evaluate
from sla.policy import Policy

log = logging.getLogger(__name__)

# Deliberate APScheduler job options: a late run is merged into one (coalesce), a job never
# overlaps itself (max_instances), and a run missed by more than the grace is dropped.
REPLAY_INTERVAL_SECONDS = 2
ALERTS_INTERVAL_SECONDS = 5  # routing and delivery: well under the shortest group_wait
PRUNE_INTERVAL_SECONDS = 3600  # alerting's old rows: a bounded batch run per hour
REPLAY_PASSES = 10  # at most this many batches of due replays per run
JOB_OPTIONS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}  # grace in s


def build_scheduler(settings: Settings, database_url: str, policy: Policy) -> BackgroundScheduler:
    """The scheduler with every Q2C job registered (not started); each runs once at start."""
    scheduler = BackgroundScheduler(timezone="UTC")
    say_overruns(scheduler)
    scheduler.add_job(
        _logged("evaluate", lambda: _evaluate(database_url, policy, settings)),
        "interval",
        seconds=settings.evaluate_interval_seconds,
        next_run_time=datetime.now(UTC),
        id="evaluate",
        **JOB_OPTIONS,
    )
    engine = create_db_engine(database_url, settings)
    scheduler.add_job(  # after the evaluation's classifying, which makes exceptions due
        _logged("alerts-watch", lambda: _watch(database_url, engine, policy, settings)),
        "interval",
        seconds=settings.evaluate_interval_seconds,
        next_run_time=datetime.now(UTC),
        id="alerts-watch",
        **JOB_OPTIONS,
    )
    alerting = _alerting(settings, database_url, policy)
    if alerting is not None:
        scheduler.add_job(
            _logged("alerts", alerting.run_once),
            "interval",
            seconds=ALERTS_INTERVAL_SECONDS,
            next_run_time=datetime.now(UTC),
            id="alerts",
            **JOB_OPTIONS,
        )
    for name, recon in _reconciliations(settings).items():
        schedule = recon.schedule
        when: dict = (
            {
                "trigger": "interval",
                "seconds": schedule.total_seconds(),
                "next_run_time": datetime.now(UTC),
            }
            if isinstance(schedule, timedelta)
            else {"trigger": cron_trigger(schedule, UTC)}
        )
        scheduler.add_job(
            _logged(f"reconcile-{name}", _reconcile_job(database_url, name, recon, settings)),
            id=f"reconcile-{name}",
            **when,
            **JOB_OPTIONS,
        )
    dispatcher = Dispatcher(database_url, settings)
    # Started at once, then every `seconds`: each takes its own lock inside its work.
    for job_id, seconds, work in (
        ("replays", REPLAY_INTERVAL_SECONDS, lambda: _dispatch(dispatcher)),
        ("alerts-prune", PRUNE_INTERVAL_SECONDS, lambda: _prune(database_url, settings)),
        ("reconcile-prune", PRUNE_INTERVAL_SECONDS, lambda: _prune_runs(database_url, settings)),
    ):
        scheduler.add_job(
            _logged(job_id, work),
            "interval",
            seconds=seconds,
            next_run_time=datetime.now(UTC),
            id=job_id,
            **JOB_OPTIONS,
        )
    scheduler.add_job(
        _logged("partitions", lambda: maintain_configured_partitions(database_url)),
        "cron",
        hour=0,
        minute=5,
        next_run_time=datetime.now(UTC),
        id="partitions",
        **JOB_OPTIONS,
    )
    return scheduler


class _NotOverrunWarnings(logging.Filter):
    """Drops APScheduler's warning that a job's run was skipped because it was still
    running: `say_overruns` says it, as what it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


def say_overruns(scheduler: BackgroundScheduler) -> None:
    """Log a run skipped because the job's previous run was still going, at INFO and in
    plain words: a job never overlaps itself by design (max_instances=1), so this is a
    slow run, not a fault; APScheduler's own warning of it is dropped."""
    logger = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _NotOverrunWarnings) for f in logger.filters):
        logger.addFilter(_NotOverrunWarnings())

    def overran(event: JobSubmissionEvent) -> None:
        log.info(
            "%s: still running at its next time; that run is skipped (a job never overlaps itself)",
            event.job_id,
        )

    scheduler.add_listener(overran, EVENT_JOB_MAX_INSTANCES)


def run_scheduler(settings: Settings, database_url: str, policy: Policy) -> None:
    """Run every Q2C job until SIGINT/SIGTERM, then let a running job finish."""
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per run is noise
    run_until_stopped(build_scheduler(settings, database_url, policy))


def run_until_stopped(scheduler: BackgroundScheduler) -> None:
    """Start `scheduler` in its own thread; on SIGINT/SIGTERM shut it down, waiting for jobs.

    The main thread only waits, and the signal handler only records the request (see
    q2c.stop_request): a shutdown called from a handler that interrupted the scheduler while
    it submitted a job would wait for the pool lock the main thread already held.
    """
    stop = StopRequest().listen()
    scheduler.start()
    log.info("scheduler running: %s", ", ".join(job.id for job in scheduler.get_jobs()))
    stop.wait()
    log.info("stopping: waiting for running jobs to finish")
    scheduler.shutdown(wait=True)


def _dispatch(dispatcher: Dispatcher) -> None:
    """Deliver what is due, a bounded number of passes per run."""
    for _ in range(REPLAY_PASSES):
        if not dispatcher.run_once().claimed:
            return


def _evaluate(database_url: str, policy: Policy, settings: Settings) -> None:
    with psycopg.connect(
        database_url, autocommit=True, connect_timeout=settings.db_connect_timeout
    ) as conn:
        report = evaluate(conn, policy)
    if report.skipped:
        log.info("evaluate: another scheduler holds the lock; skipped")


def _prune_runs(database_url: str, settings: Settings) -> None:
    report = prune_runs(database_url, timedelta(days=settings.reconcile_retention_days))
    if report.skipped:
        log.info("reconcile-prune: another scheduler holds the lock; skipped")
    elif report.runs:
        log.info("reconcile-prune: deleted %d runs with their breaks", report.runs)


def _prune(database_url: str, settings: Settings) -> None:
    report = prune(database_url, timedelta(days=settings.alerts_retention_days))
    if report.skipped:
        log.info("alerts-prune: another scheduler holds the lock; skipped")
    elif report.deleted:
        log.info(
            "alerts-prune: deleted %d groups, %d notifications, %d events, %d silences",
            report.groups,
            report.notifications,
            report.events,
            report.silences,
        )


def _alerting(settings: Settings, database_url: str, policy: Policy) -> Alerting | None:
    """Alerting as the configured alerts.yaml sets it; None (and said why) when none is
    configured or it does not load: events are still recorded, and routed once it is."""
    if settings.alerts_config is None:
        log.info("alerting: no Q2C_ALERTS_CONFIG; events are recorded, nobody is notified")
        return None
    try:
        config = load_alerts_config(settings.alerts_config)
        return Alerting(database_url, config, console_base(config, settings), policy=policy)
    except Q2CError as exc:  # a malformed file or channel secret: the other jobs run on
        log.error("alerting off: %s", exc)
        return None


def _reconciliations(settings: Settings) -> dict[str, Reconciliation]:
    """The reconciliations the configured reconcile.yaml holds; none (and said why) when
    none is configured or it does not load: the other jobs run on."""
    if settings.reconcile_config is None:
        log.info("reconciliation: no Q2C_RECONCILE_CONFIG; no reconciliation runs")
        return {}
    try:
        config: ReconcileConfig = load_reconcile_config(settings.reconcile_config)
    except Q2CError as exc:
        log.error("reconciliation off: %s", exc)
        return {}
    return dict(config.reconciliations)


def _reconcile_job(
    database_url: str, name: str, recon: Reconciliation, settings: Settings
) -> Callable[[], None]:
    def run() -> None:
        with psycopg.connect(
            database_url, autocommit=True, connect_timeout=settings.db_connect_timeout
        ) as conn:
            run_reconciliation(conn, name, recon, os.environ)  # logs what it did, or skipped

    return run


def _watch(database_url: str, engine: Engine, policy: Policy, settings: Settings) -> None:
    with psycopg.connect(
        database_url, autocommit=True, connect_timeout=settings.db_connect_timeout
    ) as conn:
        report = watch(conn, engine, policy, datetime.now(UTC))
    if report.skipped:
        log.info("alerts-watch: another scheduler holds the lock; skipped")


def _logged(name: str, job: Callable[[], object]) -> Callable[[], None]:
    """Run `job`, logging (not raising) failures so the scheduler keeps going."""

    def run() -> None:
        try:
            job()
        except psycopg.OperationalError as exc:
            log.warning("%s: database unavailable (%s); will retry on schedule", name, exc)
        except Exception:
            log.exception("%s failed", name)

    return run

"""The scheduler's jobs are configured on purpose, two schedulers side by side never
evaluate a window twice, and a scheduler stops on SIGTERM whatever it is doing."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from itertools import pairwise

import psycopg
from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.background import BackgroundScheduler

from cli.scheduler import JOB_OPTIONS, build_scheduler, say_overruns
from q2c.settings import Settings
from sla.policy import load_policy
from tests.support.otlp import stage_span, traces_request

DEADLINE = 60  # in seconds

# A scheduler busy with no-op jobs every few milliseconds and one slow job; the slow job
# says when it starts and when it ends.
BUSY_SCHEDULER = """
import time
from apscheduler.schedulers.background import BackgroundScheduler
from cli.scheduler import JOB_OPTIONS, run_until_stopped

def slow():
    print("started", flush=True)
    time.sleep(1)
    print("finished", flush=True)

scheduler = BackgroundScheduler(timezone="UTC")
scheduler.add_job(slow, id="slow")
for i in range(3):
    scheduler.add_job(lambda: None, "interval", seconds=0.002, id=f"busy-{i}", **JOB_OPTIONS)
run_until_stopped(scheduler)
"""


def test_jobs_coalesce_never_overlap_and_have_a_grace_time() -> None:
    scheduler = build_scheduler(Settings(database_url=None), "postgresql://unused", load_policy())

    jobs = {job.id: job for job in scheduler.get_jobs()}

    assert set(jobs) == {
        "evaluate",
        "alerts-watch",
        "alerts-prune",
        "reconcile-prune",
        "replays",
        "partitions",
    }
    for job in jobs.values():
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (
            JOB_OPTIONS["coalesce"],
            JOB_OPTIONS["max_instances"],
            JOB_OPTIONS["misfire_grace_time"],
        )


def test_two_schedulers_side_by_side_do_each_window_once(
    send, db_url: str, db: psycopg.Connection
) -> None:
    spans = []
    for i in range(30):
        spans.append(
            stage_span(
                f"SCH-{i}",
                "invoice_posting",
                "invoice_posted",
                "billing",
                at_s=-600 + i,
                seq=100_000 + 10 * i,
            )
        )
        spans.append(
            stage_span(
                f"SCH-{i}",
                "invoice_posting",
                "invoice_recorded",
                "erp",
                at_s=-500 + i,
                seq=110_000 + 10 * i,
            )
        )
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "Q2C_EVALUATE_INTERVAL_SECONDS": "1",
        "Q2C_LOG_LEVEL": "WARNING",
    }
    schedulers = [
        subprocess.Popen([sys.executable, "-m", "cli", "scheduler"], env=env) for _ in range(2)
    ]
    try:
        for chunk in range(0, len(spans), 6):
            send(traces_request(*spans[chunk : chunk + 6]))
        deadline = time.monotonic() + DEADLINE
        while (
            db.execute(
                "SELECT coalesce(sum(count), 0) FROM rollups WHERE bucket_seconds = 300 "
                "AND from_stage = 'invoice_posted' AND to_stage = 'invoice_recorded'"
            ).fetchone()[0]
            < 30
        ):
            assert time.monotonic() < deadline, "the schedulers never caught up"
            assert all(s.poll() is None for s in schedulers)
            time.sleep(0.2)
    finally:
        for proc in schedulers:
            proc.send_signal(signal.SIGTERM)
        for proc in schedulers:
            proc.wait(DEADLINE)

    pairs = db.execute(
        "SELECT sum(count) FROM rollups WHERE bucket_seconds = 86400 "
        "AND from_stage = 'invoice_posted' AND to_stage = 'invoice_recorded'"
    ).fetchone()[0]
    windows = db.execute("SELECT window_start, window_end FROM job_runs ORDER BY 1").fetchall()
    assert pairs == 30
    assert len(windows) == len({start for start, _ in windows})
    assert all(end_ <= next_start for (_, end_), (next_start, _) in pairwise(windows))


def test_sigterm_lets_the_running_job_finish_and_exits_cleanly() -> None:
    with subprocess.Popen([sys.executable, "-c", BUSY_SCHEDULER], stdout=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
            proc.send_signal(signal.SIGTERM)

            assert proc.wait(DEADLINE) == 0
            assert proc.stdout.read() == b"finished\n"
        finally:
            proc.kill()


def test_a_job_still_running_at_its_next_time_is_said_plainly_not_warned(caplog) -> None:
    scheduler = BackgroundScheduler(timezone="UTC")
    say_overruns(scheduler)
    started, release, skipped = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(DEADLINE)

    scheduler.add_job(slow, "interval", seconds=3600, id="slow", **JOB_OPTIONS)
    scheduler.add_listener(lambda _: skipped.set(), EVENT_JOB_MAX_INSTANCES)  # after ours
    caplog.set_level(logging.INFO)
    scheduler.start()
    try:
        scheduler.modify_job("slow", next_run_time=datetime.now(UTC))
        assert started.wait(DEADLINE)
        scheduler.modify_job("slow", next_run_time=datetime.now(UTC))  # due while running
        assert skipped.wait(DEADLINE)
    finally:
        release.set()
        scheduler.shutdown(wait=True)

    said = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert (
        "cli.scheduler",
        "INFO",
        "slow: still running at its next time; that run is skipped (a job never overlaps itself)",
    ) in said
    assert not [s for s in said if "maximum number of running instances" in s[2]], said

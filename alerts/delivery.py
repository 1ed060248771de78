"""Delivery: sends due notifications through their channels and records each outcome in the
notification log, as the replay dispatcher delivers replays (replay/dispatcher.py).

Exactly once per notification and channel, even with several deliverers: a notification
is claimed with FOR UPDATE SKIP LOCKED and a lease in a committed statement before it is
sent, and its outcome is recorded only by the claim that sent it (same attempt, still
delivering). A deliverer that dies after sending leaves the lease to run out; the next
claim sends again with the same notification id (the webhook's `webhook-id`) and the
group's dedup key, by which receivers drop the repeat.

Each channel is delivered by a thread of its own, claiming one notification at a time, so
that a channel that is down or slow delays only itself: after a failure worth retrying it
stops for this pass, its other notifications waiting for their next attempt. A group's
notifications reach a channel in their order (a resolve never overtakes its trigger).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row

from alerts.addressing import addressed
from alerts.channel import Channel, DeliveryResult
from alerts.compose import restored
from alerts.config import AlertsConfig
from alerts.suppression import Suppressor
from replay.dispatcher import HostRateLimiter

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8  # 5 s doubling to 5 min: a channel may be down for about 20 minutes
BACKOFF_SECONDS = 5.0  # first retry delay, doubled per attempt (in seconds)
MAX_BACKOFF_SECONDS = 300.0
LEASE_MARGIN = timedelta(seconds=30)  # beyond the channel's timeout
PER_PASS = 100  # notifications one channel sends in one pass at most (count)
# Messages per second a channel is sent at most, by type: Slack's incoming webhooks allow
# about one a second; PagerDuty's Events API 120 a minute per routing key.
RATES = {"slack": 1.0, "pagerduty": 2.0, "webhook": 10.0, "email": 5.0}

_CLAIM = """
WITH due AS (
    SELECT n.id FROM alert_notifications n
    WHERE n.channel = %(channel)s
      AND ((n.status = 'pending' AND n.next_attempt_at <= %(now)s)
           OR (n.status = 'delivering' AND n.lease_until < %(now)s))
      AND NOT EXISTS (
          SELECT 1 FROM alert_notifications o
          WHERE o.group_id = n.group_id AND o.channel = n.channel AND o.flush < n.flush
            AND o.status IN ('pending', 'delivering'))
    ORDER BY n.next_attempt_at, n.id
    LIMIT 1
    FOR UPDATE OF n SKIP LOCKED
)
UPDATE alert_notifications n
SET status = 'delivering', attempts = n.attempts + 1, last_attempt_at = %(at)s,
    lease_until = %(at)s + make_interval(secs => %(lease)s)
FROM due, alert_groups g
WHERE n.id = due.id AND g.id = n.group_id
RETURNING n.id, n.attempts, n.message, g.labels
"""

# Written only if this claim still owns the notification (same attempt, still delivering).
_RECORD = """
UPDATE alert_notifications
SET status = %(status)s::text, outcome = %(outcome)s::text,
    suppressed_by = %(suppressed_by)s::text, lease_until = NULL,
    -- A suppressed attempt sent nothing: it is no attempt.
    attempts = CASE WHEN %(status)s::text = 'suppressed' THEN attempts - 1 ELSE attempts END,
    next_attempt_at = coalesce(%(next_at)s::timestamptz, next_attempt_at),
    finished_at = CASE WHEN %(status)s::text <> 'pending' THEN %(at)s::timestamptz END
WHERE id = %(id)s AND status = 'delivering' AND attempts = %(attempt)s
"""

# Notifications of a channel since taken out of alerts.yaml: nothing will send them.
_ORPHANS = """
UPDATE alert_notifications
SET status = 'failed', finished_at = %(now)s, lease_until = NULL,
    outcome = 'channel ' || channel || ' is no longer configured'
WHERE status IN ('pending', 'delivering') AND channel <> ALL(%(channels)s)
"""


@dataclass
class DeliveryReport:
    """What one pass did, by notification id; `reasons` says why each failed or was
    suppressed."""

    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    suppressed: list[int] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)

    def add(self, other: DeliveryReport) -> None:
        for name in ("delivered", "retrying", "failed", "suppressed"):
            getattr(self, name).extend(getattr(other, name))
        self.reasons.update(other.reasons)


class Deliverer:
    """Delivers due notifications from the database at `url` through `channels` (by name,
    as alerts.channels.open_channel opens them). Keep one for the life of a process: its
    rate limits hold across passes. `rates` overrides RATES per channel name."""

    def __init__(
        self,
        url: str,
        config: AlertsConfig,
        channels: Mapping[str, Channel],
        rates: Mapping[str, float] | None = None,
    ) -> None:
        self.url, self.config, self.channels = url, config, channels
        self.limiters = {
            name: HostRateLimiter((rates or {}).get(name) or RATES[config.channels[name].type])
            for name in channels
        }

    def run_once(self, now: datetime) -> DeliveryReport:
        """Deliver what is due at `now` on every channel, each in a thread of its own."""
        report = DeliveryReport()
        with psycopg.connect(self.url, autocommit=True) as conn:
            suppressor = Suppressor.at(conn, self.config, now)
            conn.execute(_ORPHANS, {"now": now, "channels": list(self.config.channels)})
        with ThreadPoolExecutor(max_workers=max(1, len(self.channels))) as pool:
            passes = [
                pool.submit(self._channel_pass, name, suppressor, now) for name in self.channels
            ]
            for done in passes:
                report.add(done.result())
        return report

    def _channel_pass(self, name: str, suppressor: Suppressor, now: datetime) -> DeliveryReport:
        """Send the channel's due notifications until none is left, PER_PASS were sent, or
        one failed in a way worth retrying (the channel is down: the rest wait)."""
        report = DeliveryReport()
        lease = (self.config.channels[name].timeout + LEASE_MARGIN).total_seconds()
        started = time.monotonic()

        def clock() -> datetime:
            """`now` moved on by the time this pass has taken: sending at a channel's rate
            takes seconds, and the log says when each attempt was made and ended."""
            return now + timedelta(seconds=time.monotonic() - started)

        with psycopg.connect(self.url, autocommit=True, row_factory=namedtuple_row) as conn:
            for _ in range(PER_PASS):
                claimed: Any = conn.execute(
                    _CLAIM, {"channel": name, "now": now, "at": clock(), "lease": lease}
                ).fetchone()
                if claimed is None:
                    break
                status = self._handle(conn, name, claimed, suppressor, clock, report)
                if status == "pending":
                    break
        return report

    def _handle(
        self,
        conn: psycopg.Connection[Any],
        name: str,
        claimed: Any,
        suppressor: Suppressor,
        clock: Callable[[], datetime],
        report: DeliveryReport,
    ) -> str:
        """Send (or suppress) one claimed notification and record it; its new status."""
        params: dict[str, Any] = {
            "id": claimed.id,
            "attempt": claimed.attempts,
            "suppressed_by": None,
            "next_at": None,
        }
        why = suppressor.why(claimed.labels)
        if why is not None:
            status, params["outcome"], params["suppressed_by"] = "suppressed", None, why
        else:
            self.limiters[name].wait(name)
            result = self._send(conn, name, claimed)
            status, params["outcome"] = self._status(result, claimed.attempts), result.reason
            if status == "pending":
                params["next_at"] = clock() + timedelta(seconds=_delay(result, claimed.attempts))
            elif status == "failed" and result.retryable:
                params["outcome"] += f"; gave up after {claimed.attempts} attempts"
        params["outcome"] = _text(params["outcome"])
        if conn.execute(_RECORD, {**params, "status": status, "at": clock()}).rowcount:
            {
                "delivered": report.delivered,
                "pending": report.retrying,
                "failed": report.failed,
                "suppressed": report.suppressed,
            }[status].append(claimed.id)
            if status in ("failed", "suppressed"):
                report.reasons[claimed.id] = why or params["outcome"] or ""
        return status

    def _send(self, conn: psycopg.Connection[Any], name: str, claimed: Any) -> DeliveryResult:
        try:
            return self.channels[name].send(addressed(conn, restored(claimed.message)))
        except Exception as exc:  # a defect fails this notification, not the pass
            log.exception("sending notification %s through %s failed", claimed.id, name)
            return DeliveryResult.failure(f"internal error: {type(exc).__name__}")

    @staticmethod
    def _status(result: DeliveryResult, attempts: int) -> str:
        if result.delivered:
            return "delivered"
        return "pending" if result.retryable and attempts < MAX_ATTEMPTS else "failed"

    def close(self) -> None:
        """Release the channels."""
        for channel in self.channels.values():
            channel.close()


def _text(value: str | None) -> str | None:
    """Text as the log keeps it: no NUL characters, at most 500 characters."""
    return None if value is None else value.replace("\x00", "")[:500]


def _delay(result: DeliveryResult, attempts: int) -> float:
    """Seconds to the next attempt: what the receiver asked, else a jittered backoff."""
    if result.retry_after is not None:
        return result.retry_after
    base = min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** (attempts - 1))
    return base * random.uniform(0.5, 1.5)  # jitter: the retries of many spread out

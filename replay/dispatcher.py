"""The replay dispatcher: claims due replays, delivers them, records each outcome.

Exactly one delivery per request, even with several dispatchers: a replay is claimed with
FOR UPDATE SKIP LOCKED and a lease in a committed transaction before anything is sent, and
its outcome is recorded only by the claim that sent it. A dispatcher that dies after
sending leaves the lease to run out; the next claim re-sends with the same Idempotency-Key,
which the target uses to apply it once.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import namedtuple_row

from q2c.settings import Settings
from queries.replays import target_allowed
from replay.transport import Delivery, HttpTransport, ReplayTransport, TransportError

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})

_CLAIM = """
WITH due AS (
    SELECT correlation_id, id FROM replays
    WHERE (status = 'pending' AND next_attempt_at <= now())
       OR (status = 'delivering' AND lease_until < now())
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE replays r
SET status = 'delivering', attempts = r.attempts + 1, last_attempt_at = now(),
    lease_until = now() + make_interval(secs => %(lease)s)
FROM due, dead_letters d
WHERE r.correlation_id = due.correlation_id AND r.id = due.id
  AND d.correlation_id = r.correlation_id AND d.id = r.dead_letter_id
RETURNING r.correlation_id, r.id, r.dead_letter_id, r.attempts, r.idempotency_key,
          coalesce(r.payload_override, d.payload) AS payload, d.target_url, d.method,
          d.headers, d.content_type, d.exception_id
"""

# Written only if this claim still owns the replay (same attempt, still delivering).
_RECORD = """
UPDATE replays
SET status = %(status)s, response_code = %(code)s, response_excerpt = %(excerpt)s,
    error = %(error)s, lease_until = NULL,
    next_attempt_at = coalesce(%(next_at)s, next_attempt_at),
    finished_at = CASE WHEN %(status)s IN ('succeeded', 'failed') THEN now() END
WHERE correlation_id = %(c)s AND id = %(id)s AND status = 'delivering' AND attempts = %(attempt)s
"""

_MARK_REPLAYED = """
WITH letter AS (
    UPDATE dead_letters SET status = 'replayed'
    WHERE correlation_id = %(c)s AND id = %(dead_letter)s
), changed AS (
    UPDATE exceptions e SET status = 'replayed', updated_at = now()
    FROM exceptions prev
    WHERE e.correlation_id = %(c)s AND e.id = %(exception)s
      AND prev.correlation_id = e.correlation_id AND prev.id = e.id
      AND e.status IN ('open', 'assigned', 'in_progress')
    RETURNING prev.status AS before_status
)
INSERT INTO exception_events (correlation_id, exception_id, actor, action, before, after, comment)
SELECT %(c)s, %(exception)s, 'system:replay', 'replayed',
       (SELECT jsonb_build_object('status', before_status) FROM changed),
       jsonb_build_object('status', coalesce((SELECT 'replayed' FROM changed), 'unchanged'),
                          'replay_id', %(id)s, 'response_code', %(code)s),
       'replay delivered'
WHERE %(exception)s IS NOT NULL
"""

_MARK_FAILED = """
WITH letter AS (
    UPDATE dead_letters SET status = 'dead' WHERE correlation_id = %(c)s AND id = %(dead_letter)s
)
INSERT INTO exception_events (correlation_id, exception_id, actor, action, before, after, comment)
SELECT %(c)s, %(exception)s, 'system:replay', 'replay_failed', NULL,
       jsonb_build_object('replay_id', %(id)s, 'response_code', %(code)s), %(error)s
WHERE %(exception)s IS NOT NULL
"""


@dataclass
class DispatchReport:
    """What one pass did."""

    claimed: int = 0
    succeeded: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


class HostRateLimiter:
    """At most `rate` sends per second to each host (a token bucket per host, in-process)."""

    def __init__(self, rate: float, clock=time.monotonic, sleep=time.sleep) -> None:
        self.interval = 1.0 / rate
        self._next: dict[str, float] = {}
        self._clock, self._sleep = clock, sleep

    def wait(self, host: str) -> None:
        """Block until `host` may receive the next request."""
        now = self._clock()
        ready = self._next.get(host, now)
        if ready > now:
            self._sleep(ready - now)
        self._next[host] = max(ready, now) + self.interval


class Dispatcher:
    """Delivers due replays from the database at `url` through `transport`."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        transport: ReplayTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.settings = settings
        self.transport = transport or HttpTransport()
        self.limiter = HostRateLimiter(settings.replay_rate_per_host)
        self.rng = rng or random.Random()
        self.headers_allowed = settings.replay_headers

    def run_once(self, limit: int = 50) -> DispatchReport:
        """Claim up to `limit` due replays and deliver each once."""
        report = DispatchReport()
        lease = self.settings.replay_timeout_seconds + 30
        with psycopg.connect(self.url, autocommit=True, row_factory=namedtuple_row) as conn:
            claimed = conn.execute(_CLAIM, {"limit": limit, "lease": lease}).fetchall()
            report.claimed = len(claimed)
            for replay in claimed:
                status, params = self._deliver(replay)
                with conn.transaction():
                    recorded = conn.execute(_RECORD, params).rowcount
                    if recorded and status == "succeeded":
                        conn.execute(_MARK_REPLAYED, params)
                    elif recorded and status == "failed":
                        conn.execute(_MARK_FAILED, params)
                if recorded:
                    {
                        "succeeded": report.succeeded,
                        "pending": report.retrying,
                        "failed": report.failed,
                    }[status].append(replay.id)
        return report

    def close(self) -> None:
        """Release the transport."""
        self.transport.close()

    def _deliver(self, replay) -> tuple[str, dict]:
        params = {
            "c": replay.correlation_id,
            "id": replay.id,
            "attempt": replay.attempts,
            "dead_letter": replay.dead_letter_id,
            "exception": replay.exception_id,
            "code": None,
            "excerpt": None,
            "error": None,
            "next_at": None,
        }
        if not target_allowed(replay.target_url, self.settings.allowed_replay_hosts):
            params["error"] = f"target {replay.target_url} is not in Q2C_REPLAY_ALLOWED_HOSTS"
            return self._finish("failed", params)
        self.limiter.wait(urlsplit(replay.target_url).netloc.lower())
        try:
            answer = self.transport.send(
                replay.method,
                replay.target_url,
                self._headers(replay),
                (replay.payload or "").encode(),
                self.settings.replay_timeout_seconds,
            )
        except TransportError as exc:
            params["error"] = str(exc)[:500]
            return self._retry_or_fail(replay, params, None)
        params["code"], params["excerpt"] = answer.status, answer.body_excerpt
        if 200 <= answer.status < 300:
            return self._finish("succeeded", params)
        params["error"] = f"HTTP {answer.status}"
        if answer.status in _RETRYABLE:
            return self._retry_or_fail(replay, params, answer)
        return self._finish("failed", params)

    def _headers(self, replay) -> dict[str, str]:
        headers = {
            k: str(v)
            for k, v in (replay.headers or {}).items()
            if k.lower() in self.headers_allowed
        }
        if replay.content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = replay.content_type
        headers["Idempotency-Key"] = replay.idempotency_key
        return headers

    def _retry_or_fail(self, replay, params: dict, answer: Delivery | None) -> tuple[str, dict]:
        if replay.attempts >= self.settings.replay_max_attempts:
            params["error"] = f"{params['error']} (gave up after {replay.attempts} attempts)"
            return self._finish("failed", params)
        delay = _retry_after(answer.retry_after) if answer and answer.retry_after else None
        if delay is None:
            base = self.settings.replay_backoff_seconds * 2 ** (replay.attempts - 1)
            delay = min(MAX_BACKOFF_SECONDS, base) * self.rng.uniform(0.5, 1.5)  # jitter
        params["next_at"] = datetime.now(UTC).timestamp() + min(delay, MAX_BACKOFF_SECONDS)
        params["next_at"] = datetime.fromtimestamp(params["next_at"], UTC)
        return "pending", {**params, "status": "pending"}

    @staticmethod
    def _finish(status: str, params: dict) -> tuple[str, dict]:
        return status, {**params, "status": status}


def _retry_after(value: str) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None

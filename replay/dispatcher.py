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
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row

from q2c.settings import Settings
from q2c.vocabulary import REPLAYABLE_STATUSES, sql_list
from replay.targets import host_key, method_problem, refusal
from replay.transport import (
    Delivery,
    HttpTransport,
    ReplayTransport,
    TransportError,
    retry_after_seconds,
)

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
          r.requested_at,
          coalesce(r.payload_override, d.payload) AS payload, d.target_url, d.method,
          d.headers, d.content_type, d.exception_id
"""

# Parameters are typed: a NULL (no response code when no answer came) has no type of its own.
# Written only if this claim still owns the replay (same attempt, still delivering).
_RECORD = """
UPDATE replays
SET status = %(status)s::text, response_code = %(code)s::integer,
    response_excerpt = %(excerpt)s::text, error = %(error)s::text, lease_until = NULL,
    next_attempt_at = coalesce(%(next_at)s::timestamptz, next_attempt_at),
    finished_at = CASE WHEN %(status)s::text IN ('succeeded', 'failed') THEN now() END
WHERE correlation_id = %(c)s AND id = %(id)s AND status = 'delivering' AND attempts = %(attempt)s
"""

# Right before sending: the claim's lease may have run out while earlier replays of the batch
# were delivered, and another dispatcher may have taken this one over (its attempt then
# counts higher); the lease is renewed only if this claim still owns the replay.
_RENEW = """
UPDATE replays SET lease_until = now() + make_interval(secs => %(lease)s)
WHERE correlation_id = %(c)s AND id = %(id)s AND status = 'delivering' AND attempts = %(attempt)s
"""

_MARK_REPLAYED = f"""
WITH letter AS (
    UPDATE dead_letters SET status = 'replayed'
    WHERE correlation_id = %(c)s AND id = %(dead_letter)s
), changed AS (
    UPDATE exceptions e SET status = 'replayed', updated_at = now()
    FROM exceptions prev
    WHERE e.correlation_id = %(c)s AND e.id = %(exception)s
      AND prev.correlation_id = e.correlation_id AND prev.id = e.id
      AND e.status IN {sql_list(REPLAYABLE_STATUSES)}
    RETURNING prev.status AS before_status
)
INSERT INTO exception_events (correlation_id, exception_id, actor, action, before, after, comment)
SELECT %(c)s, %(exception)s, 'system:replay', 'replayed',
       (SELECT jsonb_build_object('status', before_status) FROM changed),
       jsonb_build_object('status', coalesce((SELECT 'replayed' FROM changed), 'unchanged'),
                          'replay_id', %(id)s::bigint, 'dead_letter_id', %(dead_letter)s::bigint,
                          'response_code', %(code)s::integer),
       'replay delivered'
WHERE %(exception)s::bigint IS NOT NULL
"""

_MARK_FAILED = """
WITH letter AS (
    UPDATE dead_letters SET status = 'dead' WHERE correlation_id = %(c)s AND id = %(dead_letter)s
)
INSERT INTO exception_events (correlation_id, exception_id, actor, action, before, after, comment)
SELECT %(c)s, %(exception)s, 'system:replay', 'replay_failed', NULL,
       jsonb_build_object('replay_id', %(id)s::bigint, 'dead_letter_id', %(dead_letter)s::bigint,
                          'response_code', %(code)s::integer),
       %(error)s::text
WHERE %(exception)s::bigint IS NOT NULL
"""


@dataclass
class DispatchReport:
    """What one pass did; `reasons` says why each failed replay failed."""

    claimed: int = 0
    succeeded: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)


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
    """Delivers due replays from the database at `url` through `transport`.

    One replay's failure, whatever it is, ends that replay (failed, with the reason) and
    never the pass: the others claimed with it are delivered as usual.
    """

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
                self._handle(conn, replay, lease, report)
        return report

    def _handle(
        self, conn: psycopg.Connection, replay: Any, lease: float, report: DispatchReport
    ) -> None:
        """Deliver one claimed replay and record its outcome, whatever goes wrong."""
        key = {"c": replay.correlation_id, "id": replay.id, "attempt": replay.attempts}
        if not conn.execute(_RENEW, {**key, "lease": lease}).rowcount:
            return  # taken over by another dispatcher: it delivers this one
        try:
            status, params = self._deliver(replay)
        except Exception as exc:  # a defect must fail this replay, not the pass
            log.exception("delivering replay %s failed", replay.id)
            status, params = _finish(
                "failed", _params(replay, error=f"internal error: {type(exc).__name__}")
            )
        try:
            recorded = self._record(conn, status, params)
        except psycopg.DataError:  # what the target answered cannot be stored as it is
            log.exception("recording the outcome of replay %s failed", replay.id)
            params = {
                **params,
                "excerpt": None,
                "error": "the outcome is recorded without the target's answer, which "
                "could not be stored",
            }
            recorded = self._record(conn, status, params)
        if recorded:
            outcome = {"succeeded": report.succeeded, "pending": report.retrying}
            outcome.get(status, report.failed).append(replay.id)
            if status == "failed":
                report.reasons[replay.id] = params["error"]

    def close(self) -> None:
        """Release the transport."""
        self.transport.close()

    @staticmethod
    def _record(conn: psycopg.Connection, status: str, params: dict[str, Any]) -> bool:
        """Write the outcome if this claim still owns the replay; whether it did."""
        params = {**params, "excerpt": _text(params["excerpt"]), "error": _text(params["error"])}
        with conn.transaction():
            recorded = conn.execute(_RECORD, params).rowcount > 0
            if recorded and status == "succeeded":
                conn.execute(_MARK_REPLAYED, params)
            elif recorded and status == "failed":
                conn.execute(_MARK_FAILED, params)
        return recorded

    def _deliver(self, replay: Any) -> tuple[str, dict[str, Any]]:
        params = _params(replay)
        refused = refusal(replay.target_url, self.settings.allowed_replay_hosts) or method_problem(
            replay.method
        )
        if refused is not None:
            return _finish("failed", {**params, "error": refused})
        limit = self.settings.replay_deadline_seconds
        if datetime.now(UTC).timestamp() > replay.requested_at.timestamp() + limit:
            error = f"not delivered within the replay deadline ({limit:g} s after the request)"
            return _finish("failed", {**params, "error": error})
        self.limiter.wait(host_key(replay.target_url))
        try:
            answer = self.transport.send(
                replay.method,
                replay.target_url,
                self._headers(replay),
                (replay.payload or "").encode(),
                self.settings.replay_timeout_seconds,
            )
        except TransportError as exc:
            params["error"] = exc.reason
            if not exc.retryable:
                return _finish("failed", params)
            return self._retry_or_fail(replay, params, None)
        params["code"], params["excerpt"] = answer.status, answer.body_excerpt
        if 200 <= answer.status < 300:
            return _finish("succeeded", params)
        params["error"] = f"HTTP {answer.status}"
        if answer.status in _RETRYABLE:
            return self._retry_or_fail(replay, params, answer)
        return _finish("failed", {**params, "error": f"HTTP {answer.status}: not retried"})

    def _headers(self, replay: Any) -> dict[str, str]:
        headers = {
            k: str(v)
            for k, v in (replay.headers or {}).items()
            if k.lower() in self.headers_allowed
        }
        if replay.content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = replay.content_type
        headers["Idempotency-Key"] = replay.idempotency_key
        return headers

    def _retry_or_fail(
        self, replay: Any, params: dict[str, Any], answer: Delivery | None
    ) -> tuple[str, dict[str, Any]]:
        """Schedule the next attempt, or fail when attempts or the deadline run out."""
        error, attempts = params["error"], replay.attempts
        if attempts >= self.settings.replay_max_attempts:
            plural = "attempt" if attempts == 1 else "attempts"
            return _finish(
                "failed", {**params, "error": f"{error}; gave up after {attempts} {plural}"}
            )
        asked = retry_after_seconds(answer.retry_after) if answer else None
        if asked is None:
            base = self.settings.replay_backoff_seconds * 2 ** (attempts - 1)
            delay = min(MAX_BACKOFF_SECONDS, base) * self.rng.uniform(0.5, 1.5)  # jitter
        else:
            delay = asked
        now = datetime.now(UTC)
        deadline = replay.requested_at.timestamp() + self.settings.replay_deadline_seconds
        if now.timestamp() + delay > deadline:
            wait = (
                f"the target asked to retry in {asked:g} s"
                if asked is not None
                else (f"the next attempt would be in {delay:.0f} s")
            )
            limit = self.settings.replay_deadline_seconds
            return _finish(
                "failed",
                {
                    **params,
                    "error": f"{error}; {wait}, past the replay deadline ({limit:g} s "
                    "after the request)",
                },
            )
        next_at = datetime.fromtimestamp(now.timestamp() + delay, UTC)
        return _finish("pending", {**params, "next_at": next_at})


def _params(replay: Any, error: str | None = None) -> dict[str, Any]:
    """The statement parameters of a replay's outcome, before delivery filled them in."""
    return {
        "c": replay.correlation_id,
        "id": replay.id,
        "attempt": replay.attempts,
        "dead_letter": replay.dead_letter_id,
        "exception": replay.exception_id,
        "code": None,
        "excerpt": None,
        "error": error,
        "next_at": None,
    }


def _text(value: str | None) -> str | None:
    """Text as a column can hold it: no NUL characters, at most 500 characters."""
    return None if value is None else value.replace("\x00", "")[:500]


def _finish(status: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return status, {**params, "status": status}

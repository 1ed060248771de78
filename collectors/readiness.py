"""Readiness: the database answers and has every migration this code expects.

The answer is for load balancers, which anyone may ask: it says what is wrong in general
words only; the details (server address, driver message, revisions) go to the log, once
each time they change.
"""

from __future__ import annotations

import logging
import time

import psycopg

from q2c.errors import first_line
from q2c.revisions import head_revision

log = logging.getLogger(__name__)

CACHE_SECONDS = 2.0  # in seconds; load balancers probe often
UNREACHABLE = "database unreachable"
NOT_MIGRATED = "database schema is not current: run q2c migrate"


class Readiness:
    """Checks (and briefly caches) whether the collector can store what it receives."""

    def __init__(self, url: str, connect_timeout: int) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._head = head_revision()
        self._checked_at = -CACHE_SECONDS
        self._problem: str | None = None
        self._detail: str | None = None

    def problem(self) -> str | None:
        """None when ready, else what is wrong, in general words."""
        now = time.monotonic()
        if now - self._checked_at >= CACHE_SECONDS:
            problem, detail = self._check()
            if detail != self._detail and detail is not None:
                log.warning("not ready: %s", detail)
            self._problem, self._detail, self._checked_at = problem, detail, now
        return self._problem

    def _check(self) -> tuple[str | None, str | None]:
        try:
            with psycopg.connect(self.url, connect_timeout=self.connect_timeout) as conn:
                row = conn.execute(
                    "SELECT version_num FROM alembic_version"
                    if _has_version_table(conn)
                    else "SELECT NULL"
                ).fetchone()
        except psycopg.Error as exc:
            return UNREACHABLE, f"{UNREACHABLE}: {first_line(exc)}"
        revision = row[0] if row else None
        if revision != self._head:
            return NOT_MIGRATED, f"database schema at {revision or 'none'}, expected {self._head}"
        return None, None


def _has_version_table(conn: psycopg.Connection) -> bool:
    found = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
    return bool(found and found[0])

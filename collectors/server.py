"""Running the collector: checks that make an unsafe configuration fail loudly, then uvicorn."""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import Any

import uvicorn

from collectors._compiled import use
from collectors.header_deadline import HeaderDeadline
from q2c.errors import Q2CError
from q2c.settings import Settings

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings, database_url: str, host: str, port: int) -> None:
    """Serve OTLP/HTTP on host:port until SIGINT/SIGTERM, finishing queued writes first."""
    decoding = use(settings.decoder)
    if not settings.tokens:
        if not is_loopback(host):
            raise Q2CError(
                f"refusing to listen on {host} without authentication: set "
                "Q2C_INGEST_TOKENS (comma-separated bearer tokens) or listen on 127.0.0.1"
            )
        log.warning("no Q2C_INGEST_TOKENS set: accepting telemetry from this machine only")
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "http": HeaderDeadline,
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 30,
        "server_header": False,
    }
    log.info("collector listening on http://%s:%d, %s", host, port, decoding)
    if settings.collector_workers == 1:
        # Imported here: with several workers this process only supervises them, and
        # keeping the app's modules out of it saves their memory.
        from collectors.app import create_app, tune_interpreter

        app = create_app(settings, database_url)
        tune_interpreter()
        uvicorn.run(app, **options)
        return
    # Worker processes rebuild the app from the environment; the URL may be the embedded
    # server's, which only this process knows.
    os.environ["DATABASE_URL"] = database_url
    uvicorn.run(
        "collectors.app:app_from_environment",
        factory=True,
        workers=settings.collector_workers,
        **options,
    )

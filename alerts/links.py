"""Console addresses for messages: every notification links to the object it is about."""

from __future__ import annotations

from urllib.parse import urlencode

from alerts.config import AlertsConfig
from q2c.settings import Settings


def console_base(config: AlertsConfig, settings: Settings) -> str:
    """Where the console is seen from: alerts.yaml's `console_url`, else the address the
    console listens on (set `console_url` when it listens on 0.0.0.0 or sits behind a
    proxy, or links lead nowhere)."""
    base = config.console_url or f"http://{settings.console_host}:{settings.console_port}"
    return base.rstrip("/")


def console_link(base: str, page: str = "", **query: str | int) -> str:
    """The absolute address of a console page: `console_link(base, "exceptions", id=7)` is
    exception 7; the pages are those of console/streamlit_app.py (`exceptions`,
    `dead_letters`, `explorer?q=CORRELATION_ID`, `stages`), the overview is ``."""
    address = f"{base}/{page}"
    return f"{address}?{urlencode(query)}" if query else address

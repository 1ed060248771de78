"""What the routing, delivery and silence tests share: HTTP receivers on loopback shaped
like a webhook consumer, PagerDuty and Slack; an alerts config pointing at them; storms of
alike failures sent through the collector; and the notification log as rows."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts.config import AlertsConfig
from alerts.load import parse_alerts_config
from alerts.run import Alerting, RunReport
from tests.support.otlp import BASE_NS, NS, stage_span, traces_request

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
ROUTING_KEY = "R0UT1NGKEY0000000000000000000000"
GROUP_WAIT = timedelta(seconds=30)
GROUP_INTERVAL = timedelta(minutes=5)
REPEAT_INTERVAL = timedelta(hours=4)


@dataclass(frozen=True)
class Received:
    """One request a receiver got."""

    path: str
    headers: dict[str, str]
    body: Any  # the JSON it carried


# An answer: (status, JSON body) for a request, or (status, JSON body, headers); the
# receiver's default says success.
Answer = Callable[[Received], tuple[int, Any] | tuple[int, Any, dict[str, str]]]


@dataclass
class Receiver:
    """A loopback HTTP server recording what it is sent and answering with `answer`."""

    url: str
    received: list[Received] = field(default_factory=list)
    answer: Answer = lambda request: (202, {"status": "success", "message": "Event processed"})

    def bodies(self) -> list[Any]:
        return [request.body for request in self.received]


@contextlib.contextmanager
def receiver(answer: Answer | None = None) -> Iterator[Receiver]:
    """A Receiver on a free loopback port, for the duration of the block."""
    lock = threading.Lock()
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            request = Received(
                self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw)
            )
            with lock:
                box[0].received.append(request)
            status, body, *more = box[0].answer(request)
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in (more[0] if more else {}).items():
                self.send_header(name, value)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet tests
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}/"))
    if answer is not None:
        box[0].answer = answer
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def config(
    hook: str,
    pager: str | None = None,
    *,
    routes: list[dict[str, Any]] | None = None,
    **sections: Any,
) -> AlertsConfig:
    """An alerts config with the webhook `ops-hook` at `hook` and PagerDuty `pager` at
    `pager`; by default one route: every exception opened, grouped by fingerprint."""
    channels: dict[str, Any] = {
        "ops-hook": {"type": "webhook", "url": hook, "secret_env": "HOOK_SECRET"}
    }
    if pager:
        channels["pager"] = {"type": "pagerduty", "url": pager, "routing_key_env": "PD_KEY"}
    default = {
        "match": {"event": "exception.opened"},
        "to": list(channels),
        "group_by": ["fingerprint"],
    }
    return parse_alerts_config(
        {
            "console_url": "http://console.test:8501",
            "channels": channels,
            "routes": routes or [default],
            **sections,
        }
    )


ENVIRON = {"HOOK_SECRET": SECRET, "PD_KEY": ROUTING_KEY}


def alerting(db_url: str, alerts_config: AlertsConfig) -> Alerting:
    """The alerting of the test database, with unthrottled channels (no test waits)."""
    return Alerting(
        db_url,
        alerts_config,
        alerts_config.console_url or "",
        ENVIRON,
        rates=dict.fromkeys(alerts_config.channels, 1000.0),
    )


def run_pass(db_url: str, alerts_config: AlertsConfig, now: datetime) -> RunReport:
    """One alerting pass as of `now`, its channels opened and closed for it alone."""
    instance = alerting(db_url, alerts_config)
    try:
        return instance.run_once(now)
    finally:
        instance.close()


def storm(
    n: int, first_seq: int, prefix: str = "INV-S", system: str = "erp", error: str = "down"
) -> Any:
    """One OTLP request of `n` alike failures (one invoice each) of invoice_recorded on
    `system`, a moment ago: `n` exceptions of one fingerprint once evaluated."""
    at_s = (time.time_ns() - BASE_NS) / NS - 1
    return traces_request(
        *(
            stage_span(
                f"{prefix}{i}",
                "invoice_posting",
                "invoice_recorded",
                system,
                at_s=at_s,
                seq=first_seq + 2 * i,
                error=error,
            )
            for i in range(n)
        )
    )


def successes(prefixes: list[str], first_seq: int, system: str = "erp") -> Any:
    """One OTLP request in which each invoice's stage succeeds at last."""
    at_s = (time.time_ns() - BASE_NS) / NS
    return traces_request(
        *(
            stage_span(
                invoice,
                "invoice_posting",
                "invoice_recorded",
                system,
                at_s=at_s,
                seq=first_seq + 2 * i,
            )
            for i, invoice in enumerate(prefixes)
        )
    )


def notifications(db: psycopg.Connection) -> list[dict[str, Any]]:
    """The notification log, oldest first."""
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT n.*, g.route, g.group_key FROM alert_notifications n "
            "JOIN alert_groups g ON g.id = n.group_id ORDER BY n.id"
        ).fetchall()

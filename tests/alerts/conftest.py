"""Receivers on loopback that speak the channels' real protocols: a Slack incoming webhook,
PagerDuty's Events API v2 (keeping its alerts' states), a webhook consumer that verifies
signatures with the Standard Webhooks reference library and reads CloudEvents with the
CloudEvents SDK, and an SMTP server (aiosmtpd) with STARTTLS, TLS and logins on
certificates made for the test (trustme). Each answers as the real one does, and can be
told to answer the next requests otherwise (429, 5xx, 410, …)."""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from alerts.notification import Notification, new_notification_id
from tests.support.peers import free_port
from tests.support.services import running_app

SLACK_PATH = "/services/T0001/B0001/sEcReTtOkEn"
ROUTING_KEY = "R0123456789abcdef0123456789abcd"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SMTP_USER, SMTP_PASSWORD = "q2c", "s3cret-pass"


@dataclass
class Receiver:
    """What a receiver was sent, and the answers it is told to give first."""

    url: str = ""
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    scripted: list[Response] = field(default_factory=list)

    def answer_next(self, *responses: Response) -> None:
        self.scripted.extend(responses)

    def bodies(self) -> list[Any]:
        return [json.loads(body) for _, body in self.requests]


async def _recorded(receiver: Receiver, request: Request) -> tuple[bytes, Response | None]:
    body = await request.body()
    receiver.requests.append((dict(request.headers), body))
    return body, receiver.scripted.pop(0) if receiver.scripted else None


@pytest.fixture
def slack() -> Iterator[Receiver]:
    """Shaped like hooks.slack.com: 200 `ok`; 400 `invalid_payload` without `text` or
    with blocks that are not a list; 404 `no_service` elsewhere."""
    receiver = Receiver()

    async def hook(request: Request) -> Response:
        body, scripted = await _recorded(receiver, request)
        if scripted is not None:
            return scripted
        if request.url.path != SLACK_PATH:
            return PlainTextResponse("no_service", 404)
        try:
            message = json.loads(body)
        except ValueError:
            return PlainTextResponse("invalid_payload", 400)
        if not isinstance(message.get("text"), str) or not isinstance(message.get("blocks"), list):
            return PlainTextResponse("invalid_payload", 400)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])
    with running_app(app) as base:
        receiver.url = base + SLACK_PATH
        yield receiver


@dataclass
class PagerDuty(Receiver):
    """Alerts by dedup_key, as PagerDuty keeps them: triggered, acknowledged, resolved."""

    alerts: dict[str, str] = field(default_factory=dict)


def _pagerduty_errors(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    errors = []
    if event.get("routing_key") != ROUTING_KEY:
        errors.append("'routing_key' is invalid")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid")
    if action in ("acknowledge", "resolve") and not event.get("dedup_key"):
        errors.append("'dedup_key' is missing")
    if action == "trigger":
        payload = event.get("payload") or {}
        for key in ("summary", "source", "severity"):
            if not payload.get(key):
                errors.append(f"'payload.{key}' is missing or blank")
        if payload.get("severity") not in (None, "critical", "error", "warning", "info"):
            errors.append("'payload.severity' is invalid")
        if len(str(payload.get("summary", ""))) > 1024:
            errors.append("'payload.summary' is longer than 1024 characters")
    if len(str(event.get("dedup_key", ""))) > 255:
        errors.append("'dedup_key' is longer than 255 characters")
    return errors


@pytest.fixture
def pagerduty() -> Iterator[PagerDuty]:
    """Shaped like events.pagerduty.com's /v2/enqueue: 202 with the dedup_key, 400 with
    the errors of an invalid event; trigger opens an alert, acknowledge and resolve act on
    an open one and are dropped otherwise."""
    receiver = PagerDuty()

    async def enqueue(request: Request) -> Response:
        body, scripted = await _recorded(receiver, request)
        if scripted is not None:
            return scripted
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        errors = _pagerduty_errors(event)
        if errors:
            invalid = {"status": "invalid event", "message": "Event object is invalid"}
            return JSONResponse({**invalid, "errors": errors}, 400)
        key = event.get("dedup_key") or uuid.uuid4().hex
        state = receiver.alerts.get(key)
        action = event["event_action"]
        if action == "trigger" and state in (None, "resolved"):
            receiver.alerts[key] = "triggered"
        elif action != "trigger" and state in ("triggered", "acknowledged"):
            receiver.alerts[key] = "acknowledged" if action == "acknowledge" else "resolved"
        accepted = {"status": "success", "message": "Event processed", "dedup_key": key}
        return JSONResponse(accepted, 202)

    app = Starlette(routes=[Route("/v2/enqueue", enqueue, methods=["POST"])])
    with running_app(app) as base:
        receiver.url = base + "/v2/enqueue"
        yield receiver


@dataclass
class Consumer(Receiver):
    """A webhook consumer: the events whose signature verified, as the SDK read them."""

    events: list[Any] = field(default_factory=list)
    secret: str = WEBHOOK_SECRET


@pytest.fixture
def consumer() -> Iterator[Consumer]:
    """A webhook endpoint that checks each delivery with the Standard Webhooks reference
    library (401 when it fails) and parses it with the CloudEvents SDK (400 when that
    fails); 204 otherwise."""
    receiver = Consumer()

    async def hook(request: Request) -> Response:
        body, scripted = await _recorded(receiver, request)
        if scripted is not None:
            return scripted
        try:
            Webhook(receiver.secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            return PlainTextResponse(str(exc), 401)
        try:
            event = from_http_event(HTTPMessage(dict(request.headers), body))
        except Exception as exc:  # the SDK's validation errors have no common base
            return PlainTextResponse(f"not a CloudEvent: {exc}", 400)
        receiver.events.append(event)
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with running_app(app) as base:
        receiver.url = base + "/hook"
        yield receiver


@dataclass
class Mailbox:
    """What an SMTP server accepted, and how the client logged in."""

    port: int = 0
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)


class _Sink:
    """aiosmtpd handler: keeps every message; refuses `nobody@` (550) and `later@` (451)."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        if address.startswith("later@"):
            return "451 4.3.0 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mailbox.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 2.0.0 Message accepted for delivery"


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    """A CA made for the tests, and its certificate as a PEM file for `ca_file`."""
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture
def smtp_server(certificates) -> Iterator[Callable[..., Mailbox]]:
    """Starts SMTP servers on free loopback ports: `smtp_server(mode)` with mode `plain`
    (no TLS, no AUTH), `starttls` (STARTTLS required before MAIL and AUTH) or `tls` (TLS
    from the first byte); `login=True` requires AUTH as SMTP_USER / SMTP_PASSWORD."""
    ca, _ = certificates
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    started: list[Controller] = []

    def start(mode: str, login: bool = False) -> Mailbox:
        mailbox = Mailbox(port=free_port())

        def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
            assert isinstance(auth_data, LoginPassword)
            user = auth_data.login.decode()
            ok = (user, auth_data.password.decode()) == (SMTP_USER, SMTP_PASSWORD)
            if ok:
                mailbox.logins.append(user)
            return AuthResult(success=ok, handled=False)  # handled=False: answer 535

        options: dict[str, Any] = {
            "authenticator": authenticate if login else None,
            "auth_required": login,
            # aiosmtpd sees no TLS on a connection that was TLS from the start: only
            # STARTTLS needs the check.
            "auth_require_tls": mode == "starttls",
        }
        if mode == "starttls":
            options.update(tls_context=context, require_starttls=True)
        elif mode == "tls":
            options["ssl_context"] = context
        controller = Controller(_Sink(mailbox), hostname="127.0.0.1", port=mailbox.port, **options)
        controller.start()
        started.append(controller)
        return mailbox

    yield start
    for controller in started:
        controller.stop()


def notification(**changes: Any) -> Notification:
    """An exception.opened notification as the flush would write it, with `changes`."""
    values: dict[str, Any] = {
        "id": new_notification_id(),
        "event": "exception.opened",
        "title": "ERP rejected invoice INV-2026-0042: tax code <T9> unknown",
        "text": "invoice_recorded failed in erp for ACME GmbH & Co. KG\nFirst seen 09:14 UTC.",
        "link": "http://console.example.com/exceptions?id=42",
        "time": datetime(2026, 12, 2, 9, 14, 5, tzinfo=UTC),
        "severity": "critical",
        "correlation_id": "order-7781",
        "group_key": "route-0/fingerprint=3f9c2a",
        "count": 1,
        "details": {
            "process": "invoice_posting",
            "stage": "invoice_recorded",
            "system": "erp",
            "amount": 12500.0,
            "fingerprint": "3f9c2a",
        },
    }
    values.update(changes)
    return Notification(**values)


@pytest.fixture
def alike() -> Callable[..., Notification]:
    """Notifications for the channel tests (see `notification`)."""
    return notification

"""The demo's notification sink: receivers shaped like a Slack incoming webhook, PagerDuty's
Events API v2 and a webhook consumer, which the demo's alerts.yaml points its channels at,
so that a newcomer sees alerts flow (in the console's Alerts page, and at GET /sink here)
without configuring anything. Each answers as the real service does; what it is sent is
kept, the latest SINK_SIZE messages."""

from __future__ import annotations

import json
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

SINK_SIZE = 200


def _summary(channel: str, body: dict[str, Any]) -> str:
    """What a person would read first: Slack's text, PagerDuty's summary, the event type."""
    if channel == "slack":
        return str(body.get("text", ""))
    if channel == "pagerduty":
        payload = body.get("payload") or {}
        return f"{body.get('event_action')}: {payload.get('summary', '')}".strip()
    return f"{body.get('type', '')} {body.get('subject', '')}".strip()


def create_sink() -> Starlette:
    """The sink's ASGI app: POST /slack/…, /pagerduty, /webhook; GET / lists what came."""
    received: deque[dict[str, Any]] = deque(maxlen=SINK_SIZE)
    lock = threading.Lock()

    async def receive(request: Request) -> Response:
        channel = request.path_params["channel"]
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"status": "invalid event", "errors": ["not JSON"]}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"status": "invalid event", "errors": ["not an object"]}, 400)
        with lock:
            received.append(
                {
                    "at": datetime.now(UTC).isoformat(),
                    "channel": channel,
                    "summary": _summary(channel, body),
                    "webhook_id": request.headers.get("webhook-id"),
                }
            )
        if channel == "slack":
            return PlainTextResponse("ok")
        if channel == "pagerduty":
            return JSONResponse(
                {
                    "status": "success",
                    "message": "Event processed",
                    "dedup_key": body.get("dedup_key"),
                },
                202,
            )
        return Response(status_code=204)

    async def listing(request: Request) -> JSONResponse:
        with lock:
            return JSONResponse(list(reversed(received)))

    return Starlette(
        routes=[
            Route("/", listing, methods=["GET"]),
            Route("/{channel:str}", receive, methods=["POST"]),
            Route("/{channel:str}/{rest:path}", receive, methods=["POST"]),
        ]
    )

"""Slack: a message POSTed to an incoming webhook, in Block Kit with a `text` fallback (what
notifications and screen readers show). The webhook URL is itself the secret: it is read
from the environment and never shown, not even in a failure's reason."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from alerts.channel import DeliveryResult
from alerts.channels._http import post, refused, scrubbed
from alerts.config import SlackChannel as SlackConfig
from alerts.notification import Notification
from replay.transport import HttpTransport

# Block Kit's limits: longer texts are refused with invalid_blocks.
HEADER_CHARS = 150
SECTION_CHARS = 3000
FIELD_CHARS = 2000
MAX_FIELDS = 10


def check_webhook_url(value: str) -> None:
    """ValueError, without repeating the URL, when `value` cannot be a webhook URL."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("is not an http:// or https:// URL")


def _mrkdwn(text: str) -> str:
    # Slack reads &, < and > as markup (links, mentions): everything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message(notification: Notification) -> dict[str, Any]:
    """The JSON body Slack's incoming webhook takes."""
    n = notification
    # An incoming webhook knows no console user's Slack ID: the owner is named, in bold.
    mention = f"Assigned to *{_mrkdwn(n.owner.name)}*\n" if n.owner is not None else ""
    blocks: list[Mapping[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(n.headline(), HEADER_CHARS)},
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _cut(mention + _mrkdwn(n.text), SECTION_CHARS)},
        },
    ]
    facts = list(n.details.items())[:MAX_FIELDS]
    if facts:
        fields = [
            {
                "type": "mrkdwn",
                "text": _cut(f"*{_mrkdwn(key)}*\n{_mrkdwn(str(value))}", FIELD_CHARS),
            }
            for key, value in facts
        ]
        blocks.append({"type": "section", "fields": fields})
    blocks.append(
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open in Q2C Console"},
                    "url": n.link,
                }
            ],
        }
    )
    context = f"{n.event} · {n.time.isoformat(timespec='seconds')}"
    if n.correlation_id:
        context += f" · correlation ID `{_mrkdwn(n.correlation_id)}`"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    to = f" — for {_mrkdwn(n.owner.name)}" if n.owner is not None else ""
    return {"text": f"{_mrkdwn(n.headline())}{to} — {n.link}", "blocks": blocks}


class SlackChannel:
    """Channel for a Slack incoming webhook (see alerts.channel.Channel for the contract).
    Slack answers 200 `ok`, or 4xx with a word (`invalid_payload`, `no_service`,
    `channel_is_archived`), or 429 with Retry-After when sent more than about one message
    a second."""

    def __init__(
        self,
        name: str,
        config: SlackConfig,
        environ: Mapping[str, str],
    ) -> None:
        self.name, self._config = name, config
        self._url = environ.get(config.url_env, "")
        self._transport = HttpTransport()

    def send(self, notification: Notification) -> DeliveryResult:
        variable = self._config.url_env
        if not self._url:
            return DeliveryResult.failure(f"${variable} is not set")
        try:
            check_webhook_url(self._url)
        except ValueError as exc:
            return DeliveryResult.failure(f"${variable} {exc}")
        body = json.dumps(message(notification)).encode()
        answer = post(
            self._transport,
            self._url,
            {"content-type": "application/json; charset=utf-8"},
            body,
            self._config.timeout.total_seconds(),
        )
        if isinstance(answer, DeliveryResult):
            return scrubbed(answer, self._url, variable)
        said = answer.body_excerpt.strip()[:200]
        if answer.status == 200:
            return DeliveryResult.success(f"Slack answered 200 {said}".rstrip())
        return refused(answer, f"Slack answered {answer.status} {said}".rstrip())

    def close(self) -> None:
        self._transport.close()

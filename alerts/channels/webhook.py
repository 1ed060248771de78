"""Webhooks: each notification a CloudEvents 1.0 event in structured JSON mode
(`application/cloudevents+json`), signed as Standard Webhooks 1.0 specifies so the
consumer can tell it came from us, unaltered and recently."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from alerts.channel import DeliveryResult
from alerts.channels._http import post, refused
from alerts.config import WebhookChannel as WebhookConfig
from alerts.notification import Notification
from alerts.signing import parse_secret, signed_headers
from replay.transport import HttpTransport

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
TYPE_PREFIX = "q2c."  # CloudEvents `type`: q2c.exception.opened, q2c.slo.alert, …


def cloud_event(notification: Notification, source: str) -> dict[str, Any]:
    """The CloudEvent: `id` the notification's, `source` this Q2C (its console's address),
    `subject` the correlation ID, `data` everything the message says."""
    n = notification
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": n.id,
        "source": source,
        "type": TYPE_PREFIX + n.event,
        "time": n.time.isoformat(),
        "datacontenttype": "application/json",
    }
    if n.correlation_id:
        envelope["subject"] = n.correlation_id
    envelope["data"] = {
        "title": n.title,
        "text": n.text,
        "status": n.status,
        "severity": n.severity,
        "count": n.count,
        "group_key": n.dedup_key,
        "correlation_id": n.correlation_id,
        "link": n.link,
        "details": dict(n.details),
    }
    return envelope


class WebhookChannel:
    """Channel for a signed webhook (see alerts.channel.Channel for the contract). Any 2xx
    is a delivery; 410 Gone says the consumer wants no more; 408, 429 and 5xx may succeed
    later. Each attempt is signed anew with its own `webhook-timestamp`; `webhook-id` is
    the notification's, the same on every attempt, for the consumer to deduplicate by."""

    def __init__(
        self,
        name: str,
        config: WebhookConfig,
        environ: Mapping[str, str],
        source: str,
    ) -> None:
        self.name, self._config, self._source = name, config, source
        self._secret = environ.get(config.secret_env, "")
        self._transport = HttpTransport()

    def send(self, notification: Notification) -> DeliveryResult:
        variable = self._config.secret_env
        if not self._secret:
            return DeliveryResult.failure(f"${variable} is not set")
        try:
            key = parse_secret(self._secret)
        except ValueError as exc:
            return DeliveryResult.failure(f"${variable} {exc}")
        # Compact and sent exactly as signed: a stray space would break the signature.
        body = json.dumps(cloud_event(notification, self._source), separators=(",", ":")).encode()
        headers = {
            "content-type": CONTENT_TYPE,
            **signed_headers(key, notification.id, int(time.time()), body),
        }
        answer = post(
            self._transport, self._config.url, headers, body, self._config.timeout.total_seconds()
        )
        if isinstance(answer, DeliveryResult):
            return answer
        said = f"{self._config.url} answered {answer.status}"
        if 200 <= answer.status < 300:
            return DeliveryResult.success(said)
        if answer.status == 410:
            return DeliveryResult.failure(f"{said} Gone: the consumer wants no more webhooks")
        return refused(answer, f"{said}: {answer.body_excerpt.strip()[:200]}".rstrip(": "))

    def close(self) -> None:
        self._transport.close()

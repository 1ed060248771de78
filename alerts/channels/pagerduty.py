"""PagerDuty Events API v2: a `firing` notification is a `trigger`, an `acknowledged` one
an `acknowledge`, a `resolved` one a `resolve`, all with the group's `dedup_key`, so that
one incident follows one group from start to end. A group whose first notification is
acknowledged already (an ownership rule assigned its exception before anybody was told)
is a `trigger` then an `acknowledge`: PagerDuty drops an acknowledge of an incident it
does not have, and the incident would never exist.

A trigger's payload: `summary` the headline, `source` the system at fault (the detail
`system`, else `q2c`), `component` its stage, `group` its process, `class` the event,
`severity` from the impact (critical → critical, high → error, medium → warning,
low → info), `custom_details` the details; `links` the console link.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from alerts.channel import DeliveryResult
from alerts.channels._http import post, refused
from alerts.config import PagerDutyChannel as PagerDutyConfig
from alerts.events import Status
from alerts.notification import Notification
from q2c.vocabulary import Impact
from replay.transport import HttpTransport

ACTIONS: dict[Status, str] = {
    "firing": "trigger",
    "acknowledged": "acknowledge",
    "resolved": "resolve",
}
SEVERITIES: dict[Impact | None, str] = {
    "critical": "critical",
    "high": "error",
    "medium": "warning",
    "low": "info",
    None: "info",
}
SUMMARY_CHARS = 1024  # PagerDuty's limit
DEDUP_KEY_CHARS = 255  # PagerDuty's limit


def dedup_key(notification: Notification) -> str:
    """The group's key as PagerDuty takes it: a key past its 255 characters (a group of
    long business keys) is replaced by its SHA-256, equal for every message of the group."""
    key = notification.dedup_key
    return key if len(key) <= DEDUP_KEY_CHARS else hashlib.sha256(key.encode()).hexdigest()


def actions(notification: Notification) -> tuple[str, ...]:
    """The events that tell PagerDuty `notification`, in order."""
    if notification.opens and notification.status == "acknowledged":
        return ("trigger", "acknowledge")
    return (ACTIONS[notification.status],)


def event(notification: Notification, routing_key: str, action: str) -> dict[str, Any]:
    """The JSON body of POST /v2/enqueue for `action` (one of `actions(notification)`)."""
    n = notification
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(n),
    }
    if action != "trigger":
        return body  # acknowledge and resolve name the alert; they carry no payload
    payload: dict[str, Any] = {
        # The incident's title says what is wrong, not that it is taken already.
        "summary": replace(n, status="firing").headline()[:SUMMARY_CHARS],
        "source": str(n.details.get("system", "q2c")),
        "severity": SEVERITIES[n.severity],
        "timestamp": n.time.isoformat(),
        "class": n.event,
        "custom_details": {
            **n.details,
            "count": n.count,
            **({"correlation_id": n.correlation_id} if n.correlation_id else {}),
            "text": n.text,
        },
    }
    for field, detail in (("component", "stage"), ("group", "process")):
        if detail in n.details:
            payload[field] = str(n.details[detail])
    body.update(
        payload=payload,
        links=[{"href": n.link, "text": "Open in Q2C Console"}],
        client="Q2C Console",
        client_url=n.link,
    )
    return body


class PagerDutyChannel:
    """Channel for PagerDuty's Events API v2 (see alerts.channel.Channel for the contract).
    PagerDuty answers 202 `{"status": "success", "dedup_key": …}`; 400 for an event it will
    never take; 429 and 5xx for one to send again later."""

    def __init__(
        self,
        name: str,
        config: PagerDutyConfig,
        environ: Mapping[str, str],
    ) -> None:
        self.name, self._config = name, config
        self._routing_key = environ.get(config.routing_key_env, "")
        self._transport = HttpTransport()

    def send(self, notification: Notification) -> DeliveryResult:
        if not self._routing_key:
            return DeliveryResult.failure(f"${self._config.routing_key_env} is not set")
        accepted = []
        for action in actions(notification):  # a retry sends each again: PagerDuty dedups
            result = self._send(event(notification, self._routing_key, action))
            if not result.delivered:
                return result
            accepted.append(result.reason)
        return DeliveryResult.success("; ".join(accepted))

    def _send(self, body: dict[str, Any]) -> DeliveryResult:
        answer = post(
            self._transport,
            self._config.url,
            {"content-type": "application/json"},
            json.dumps(body).encode(),
            self._config.timeout.total_seconds(),
        )
        if isinstance(answer, DeliveryResult):
            return answer
        try:
            said = json.loads(answer.body_excerpt)
        except ValueError:
            said = {}
        said = said if isinstance(said, dict) else {}
        action = body["event_action"]
        if answer.status == 202 and said.get("status") == "success":
            key = said.get("dedup_key", body["dedup_key"])
            return DeliveryResult.success(f"PagerDuty accepted the {action} (dedup_key {key})")
        detail = "; ".join(str(e) for e in said.get("errors", ())) or said.get("message", "")
        excerpt = detail or answer.body_excerpt.strip()[:200]
        return refused(answer, f"PagerDuty answered {answer.status} to the {action}: {excerpt}")

    def close(self) -> None:
        self._transport.close()

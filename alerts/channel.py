"""The one interface every channel implements, and what a delivery attempt returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from alerts.notification import Notification


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of one attempt. `reason` says what the receiver answered or why nothing
    reached it, in words an operator acts on, and never holds a secret. `retryable` says
    whether sending the same notification again may succeed (a timeout, 429, 5xx), and
    `retry_after` how long the receiver asked to wait (in seconds), when it did."""

    delivered: bool
    reason: str
    retryable: bool = False
    retry_after: float | None = None

    @classmethod
    def success(cls, reason: str) -> DeliveryResult:
        return cls(True, reason)

    @classmethod
    def failure(
        cls, reason: str, retryable: bool = False, retry_after: float | None = None
    ) -> DeliveryResult:
        return cls(False, reason, retryable, retry_after)


class Channel(Protocol):
    """Sends notifications through one configured channel.

    `send` makes one attempt and returns its DeliveryResult: it never raises for anything
    the network, the receiver or a missing secret does, never retries by itself (the
    caller decides, from `retryable`), and gives up after the channel's timeout. Secrets
    are read from the environment when the channel is opened; they are never logged nor
    put into a result. `close` releases connections; a closed channel sends nothing.
    """

    name: str

    def send(self, notification: Notification) -> DeliveryResult: ...

    def close(self) -> None: ...

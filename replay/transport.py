"""How a replay reaches its target: the transport interface and its HTTP implementation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx


@dataclass(frozen=True)
class Delivery:
    """The target's answer: status code, headers we care about, and the start of the body."""

    status: int
    retry_after: str | None
    body_excerpt: str


class TransportError(Exception):
    """The request did not get an answer (timeout, refused connection, reset)."""


class ReplayTransport(Protocol):
    """Sends one request. Returns the answer, or raises TransportError when none came;
    never retries by itself (the dispatcher decides)."""

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, timeout: float
    ) -> Delivery: ...

    def close(self) -> None: ...


EXCERPT_CHARS = 500


class HttpTransport:
    """ReplayTransport over httpx, without redirects (a redirect could leave the allow-list)."""

    def __init__(self) -> None:
        self._client = httpx.Client(follow_redirects=False)

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, timeout: float
    ) -> Delivery:
        try:
            response = self._client.request(
                method, url, headers=headers, content=body, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return Delivery(
            response.status_code, response.headers.get("retry-after"), response.text[:EXCERPT_CHARS]
        )

    def close(self) -> None:
        self._client.close()

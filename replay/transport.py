"""How a replay reaches its target: the transport interface and its HTTP implementation."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx


@dataclass(frozen=True)
class Delivery:
    """The target's answer: status code, headers we care about, and the start of the body."""

    status: int
    retry_after: str | None
    body_excerpt: str


class TransportError(Exception):
    """The request got no answer. `reason` says why in words an engineer acts on
    ("connection refused"); `retryable` is False when sending again cannot help (TLS that
    the target is not configured for or a certificate it will keep presenting, a URL the
    client cannot use)."""

    def __init__(self, reason: str, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.retryable = reason, retryable


class ReplayTransport(Protocol):
    """Sends one request. Returns the answer, or raises TransportError when none came;
    never retries by itself (the dispatcher decides)."""

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, timeout: float
    ) -> Delivery: ...

    def close(self) -> None: ...


EXCERPT_BYTES = 2000  # of the answer read, at most, and kept (its first 500 characters)


class HttpTransport:
    """ReplayTransport over httpx, without redirects (a redirect could leave the allow-list)
    and without proxies or .netrc from the environment (a replay goes where it says)."""

    def __init__(self) -> None:
        self._client = httpx.Client(follow_redirects=False, trust_env=False)

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, timeout: float
    ) -> Delivery:
        deadline = time.monotonic() + timeout
        try:
            with self._client.stream(
                method, url, headers=headers, content=body, timeout=timeout
            ) as response:
                excerpt = bytearray()
                # Only the start of the answer is kept, and a target that trickles it out
                # does not hold the delivery past its timeout.
                for chunk in response.iter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT_BYTES or time.monotonic() > deadline:
                        break
        except httpx.TimeoutException:
            raise TransportError(f"no answer within {timeout:g} s") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise failure_of(exc) from None
        text = bytes(excerpt[:EXCERPT_BYTES]).decode(response.encoding or "utf-8", "replace")
        return Delivery(response.status_code, response.headers.get("retry-after"), text[:500])

    def close(self) -> None:
        self._client.close()


def failure_of(exc: BaseException) -> TransportError:
    """The TransportError for an HTTP client's exception, from the OS or TLS error under it."""
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return TransportError(f"the target URL is unusable: {exc}", retryable=False)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return TransportError(
                f"TLS certificate not trusted: {cause.verify_message}", retryable=False
            )
        if isinstance(cause, ssl.SSLError):
            return TransportError(f"TLS handshake failed: {cause.reason or cause}", retryable=False)
        if isinstance(cause, socket.gaierror):
            return TransportError(f"DNS lookup failed: {cause.strerror}")
        if isinstance(cause, ConnectionRefusedError):
            return TransportError("connection refused")
        if isinstance(cause, ConnectionResetError):
            return TransportError("connection reset by the target")
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.RemoteProtocolError):
        return TransportError(f"the target broke the HTTP exchange: {exc}")
    return TransportError(f"{type(exc).__name__}: {exc}")


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds to wait: it is either a number of seconds or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; an obsolete spelling may not say so
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())

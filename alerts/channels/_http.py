"""What the HTTP channels share: one POST through the replay transport (no redirects, no
proxies from the environment, the answer's start only), and the reading of an answer that
is not a success."""

from __future__ import annotations

from alerts.channel import DeliveryResult
from replay.transport import Delivery, ReplayTransport, TransportError, retry_after_seconds

USER_AGENT = "q2c-console-alerts"


def post(
    transport: ReplayTransport, url: str, headers: dict[str, str], body: bytes, timeout: float
) -> Delivery | DeliveryResult:
    """The receiver's answer, or the failed DeliveryResult when none came."""
    try:
        return transport.send("POST", url, {"user-agent": USER_AGENT, **headers}, body, timeout)
    except TransportError as exc:
        return DeliveryResult.failure(exc.reason, exc.retryable)


def refused(answer: Delivery, what: str) -> DeliveryResult:
    """A non-success answer, `what` saying who answered what: 408, 429 and 5xx may succeed
    later (after Retry-After, when given); any other answer will not."""
    status = answer.status
    retryable = status in (408, 429) or status >= 500
    wait = retry_after_seconds(answer.retry_after) if retryable else None
    if 300 <= status < 400:
        what += " (a redirect, which alerts do not follow: configure the final URL)"
    return DeliveryResult.failure(what, retryable, wait)


def scrubbed(result: DeliveryResult, secret: str, name: str) -> DeliveryResult:
    """`result` with `secret` (a URL that is itself the secret) replaced by its variable's
    name, should a transport error ever quote it."""
    if secret and secret in result.reason:
        return DeliveryResult(
            result.delivered,
            result.reason.replace(secret, f"${name}"),
            result.retryable,
            result.retry_after,
        )
    return result

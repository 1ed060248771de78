"""Webhook signatures as Standard Webhooks 1.0 specifies: HMAC-SHA256 over
`{webhook-id}.{webhook-timestamp}.{body}`, sent as `webhook-signature: v1,<base64>`, with
a secret serialised as `whsec_<base64>`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24  # the specification's floor (192 bits)
MAX_SECRET_BYTES = 64  # and its ceiling (512 bits)


def parse_secret(value: str) -> bytes:
    """The key that a `whsec_<base64>` secret serialises; ValueError, saying what is wrong
    without repeating the value, when it is not one."""
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"does not start with {SECRET_PREFIX} (expected whsec_<base64>)")
    encoded = value.removeprefix(SECRET_PREFIX)
    try:
        # Padding is optional in the wild; what decodes the same either way is accepted.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("is not base64 after whsec_") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"decodes to {len(key)} bytes; a signing secret has "
            f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES}"
        )
    return key


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (one v1 signature) of a message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers Standard Webhooks puts on a delivery."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, message_id, timestamp, body),
    }

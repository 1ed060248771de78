"""Hiding secrets in payloads and headers before a person sees them."""

from __future__ import annotations

import re

_SECRET_KEYS = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|authorization|auth|cookie|iban|card[_-]?number|cvv)",
    re.IGNORECASE,
)
# "key": "value" in JSON, key=value in forms and headers
_JSON_PAIR = re.compile(r'("(?P<key>[^"]+)"\s*:\s*)"(?:[^"\\]|\\.)*"')
_FORM_PAIR = re.compile(r"(?P<lead>(?:^|[&\s;])(?P<key>[A-Za-z0-9_.-]+)=)[^&\s;]+")
_CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")
MASK = "•••"


def mask_secrets(text: str | None) -> str:
    """`text` with values of secret-looking keys and card-like numbers replaced by •••."""
    if not text:
        return text or ""

    def json_pair(match: re.Match) -> str:
        return f'{match.group(1)}"{MASK}"' if _SECRET_KEYS.search(match["key"]) else match.group(0)

    def form_pair(match: re.Match) -> str:
        return f"{match['lead']}{MASK}" if _SECRET_KEYS.search(match["key"]) else match.group(0)

    masked = _JSON_PAIR.sub(json_pair, text)
    masked = _FORM_PAIR.sub(form_pair, masked)
    return _CARD.sub(MASK, masked)


def mask_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers with secret-looking ones masked."""
    return {k: (MASK if _SECRET_KEYS.search(k) else v) for k, v in headers.items()}

"""Which replay targets a payload may be sent to: one rule, applied when a dead letter is
stored, when a replay is requested and again right before it is delivered.

A target is usable when it is an absolute http(s) URL with a host, a valid port, no
credentials and no control characters or spaces anywhere; it is allowed when its host (or
host:port) is on Q2C_REPLAY_ALLOWED_HOSTS as well. Clients parse URLs more leniently than
`urllib.parse` does (urlsplit silently drops tabs and newlines; httpx turns user:password@
into an Authorization header), so anything unusual is refused, never repaired.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from q2c.masking import configured

MAX_TARGET_CHARS = 2048
# Methods a replay may use: those that deliver a message (a dead-lettered GET reads nothing
# worth sending again; TRACE, CONNECT and the like are not messages).
REPLAY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")  # control characters and spaces
_USERINFO = re.compile(r"//[^/?#@]*@")


def shown(url: str) -> str:
    """`url` as safe to print: control characters escaped, any user:password@ and secret
    in the query string (`?token=…`) masked."""
    escaped = url[:200].encode("unicode_escape").decode("ascii")
    escaped = configured().text(_USERINFO.sub("//•••@", escaped)) or ""
    return escaped + ("…" if len(url) > 200 else "")


def target_problem(url: object) -> str | None:
    """Why `url` cannot be a replay target, naming it; None when it can."""
    if url is None or url == "":
        return "no replay target was recorded for this message"
    if not isinstance(url, str):
        return f"the replay target must be a URL string, not {type(url).__name__}"
    if len(url) > MAX_TARGET_CHARS:
        return f"target {shown(url)} is longer than {MAX_TARGET_CHARS} characters"
    if _UNSAFE.search(url):
        return f"target {shown(url)} contains control characters or spaces"
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced [ in the host, say
        return f"target {shown(url)} is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return f"target {shown(url)} is not an http:// or https:// URL"
    if "@" in parts.netloc:
        return (
            f"target {shown(url)} carries credentials (user@ or user:password@), which are refused"
        )
    try:
        port = parts.port
    except ValueError:
        return f"target {shown(url)} has an invalid port"
    if not parts.hostname:
        return f"target {shown(url)} names no host"
    if port == 0:
        return f"target {shown(url)} has an invalid port"
    return None


def method_problem(method: object) -> str | None:
    """Why `method` cannot be a replay's HTTP method; None when it can."""
    if isinstance(method, str) and method in REPLAY_METHODS:
        return None
    allowed = ", ".join(sorted(REPLAY_METHODS))
    return f"method {ascii(method)[:40]} is not one a replay may use ({allowed})"


def host_key(url: str) -> str:
    """The host, with its port if given (IPv6 in brackets), a target is allowed and
    rate-limited by, as Q2C_REPLAY_ALLOWED_HOSTS spells it; `url` must be usable."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.port is None:
        return host
    return f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"


def refusal(url: object, allowed_hosts: frozenset[str]) -> str | None:
    """Why a payload may not be sent to `url`; None when it may."""
    problem = target_problem(url)
    if problem is not None:
        return problem
    assert isinstance(url, str)
    host = (urlsplit(url).hostname or "").lower()
    if {host, f"[{host}]", host_key(url)} & allowed_hosts:
        return None
    return f"target {shown(url)} is not in Q2C_REPLAY_ALLOWED_HOSTS"

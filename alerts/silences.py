"""Silences: a person's "tell nobody of this until then" (matchers, start, end, reason).
They suppress notifications, never exceptions. Creating and expiring one are commands in
the sense of queries/: the actor's role is checked on the server side (on-call engineers
and admins) and the audit log row (`silence.create`, `silence.expire`) is written in the
same transaction. A silence is never deleted: expiring it early records who and when."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from alerts.config import EventMatch, OneOrMany
from q2c.config_errors import key_path
from q2c.errors import Q2CError
from queries.audit import record
from queries.users import allowed_user

MAX_REASON_CHARS = 500

_COLUMNS = "id, matchers, starts_at, ends_at, reason, author, created_at, expired_by, expired_at"
_CREATE = text(
    f"INSERT INTO alert_silences (matchers, starts_at, ends_at, reason, author) "
    f"VALUES (:matchers, :starts_at, :ends_at, :reason, :author) RETURNING {_COLUMNS}"
).bindparams(bindparam("matchers", type_=JSONB))
_LIST = text(
    f"SELECT {_COLUMNS} FROM alert_silences "
    "WHERE :all OR least(ends_at, expired_at) > :now ORDER BY starts_at DESC, id DESC"
)
_EXPIRE = text(
    "UPDATE alert_silences SET expired_by = :actor, expired_at = :now "
    f"WHERE id = :id AND expired_at IS NULL AND ends_at > :now RETURNING {_COLUMNS}"
)


class SilenceMatch(EventMatch):
    """What a silence matches: EventMatch, and one alert's own labels (its fingerprint,
    its transaction), as `q2c silences add --match fingerprint=…` gives them."""

    fingerprint: OneOrMany[str] | None = None
    correlation_id: OneOrMany[str] | None = None


@dataclass(frozen=True)
class Silence:
    """A silence as the log shows it; `ended_at` is when it stops (or stopped) applying."""

    id: int
    matchers: dict[str, list[str]]
    starts_at: datetime
    ends_at: datetime
    reason: str
    author: str
    created_at: datetime
    expired_by: str | None
    expired_at: datetime | None

    @property
    def ended_at(self) -> datetime:
        return min(self.ends_at, self.expired_at) if self.expired_at else self.ends_at

    def active(self, now: datetime) -> bool:
        """Whether it suppresses notifications at `now`."""
        return self.starts_at <= now < self.ended_at


def parse_matchers(matchers: Mapping[str, Any]) -> SilenceMatch:
    """The silence's match, from `{"system": "erp"}` or `{"impact": ["critical", "high"]}`;
    Q2CError naming the key when one is unknown or has an impossible value."""
    try:
        match = SilenceMatch.model_validate(dict(matchers))
    except ValidationError as exc:
        keys = ", ".join(SilenceMatch.model_fields)
        problems = [
            f"{key_path(list(e['loc']))}: "
            + (f"unknown key (use {keys})" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        ]
        raise Q2CError("invalid silence matchers: " + "; ".join(problems)) from None
    if all(values is None for _, values in match):
        raise Q2CError("a silence needs at least one matcher (system=erp, say)")
    return match


def create_silence(
    engine: Engine,
    actor: str,
    matchers: Mapping[str, Any],
    ends_at: datetime,
    reason: str,
    starts_at: datetime | None = None,
) -> Silence:
    """Silence what `matchers` match from `starts_at` (default now) until `ends_at`."""
    match = parse_matchers(matchers)
    starts_at = starts_at or datetime.now(UTC)
    reason = reason.strip()
    if not 0 < len(reason) <= MAX_REASON_CHARS:
        raise Q2CError(f"a silence needs a reason of 1 to {MAX_REASON_CHARS} characters")
    if ends_at <= starts_at:
        raise Q2CError("a silence must end after it starts")
    kept = match.model_dump(mode="json", exclude_none=True)
    with engine.begin() as conn:
        author = allowed_user(conn, actor, "silences.manage").username
        row = conn.execute(
            _CREATE,
            {
                "matchers": kept,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "reason": reason,
                "author": author,
            },
        ).one()
        record(
            conn,
            author,
            "silence.create",
            object_type="silence",
            object_id=row.id,
            detail={
                "matchers": kept,
                "starts_at": starts_at.isoformat(),
                "ends_at": ends_at.isoformat(),
                "reason": reason,
            },
        )
    return Silence(**row._mapping)


def list_silences(
    engine: Engine, actor: str, include_ended: bool = False, now: datetime | None = None
) -> list[Silence]:
    """The silences in force or to come (all of them with `include_ended`), latest first."""
    with engine.connect() as conn:
        allowed_user(conn, actor, "silences.view")
        rows = conn.execute(_LIST, {"all": include_ended, "now": now or datetime.now(UTC)})
        return [Silence(**row._mapping) for row in rows]


def expire_silence(
    engine: Engine, actor: str, silence_id: int, now: datetime | None = None
) -> Silence:
    """End the silence `silence_id` now; Q2CError when it has already ended."""
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        author = allowed_user(conn, actor, "silences.manage").username
        row = conn.execute(_EXPIRE, {"id": silence_id, "actor": author, "now": now}).one_or_none()
        if row is None:
            raise Q2CError(f"no silence {silence_id} in force or to come")
        record(
            conn,
            author,
            "silence.expire",
            object_type="silence",
            object_id=silence_id,
            detail={"matchers": row.matchers, "planned_end": row.ends_at.isoformat()},
        )
    return Silence(**row._mapping)

"""A notification: one message about one object (or one group of alike ones), in the words
every channel renders, with the console link of what it is about."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from alerts.events import Status
from q2c.vocabulary import Impact

_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_STATUS_PREFIX: dict[Status, str] = {
    "firing": "",
    "acknowledged": "Acknowledged: ",
    "resolved": "Resolved: ",
}


@dataclass(frozen=True)
class Owner:
    """The person a notification concerns, as the users table says when it is delivered:
    `name` their display name (else their user name), `email` None when they have none
    (or are disabled)."""

    username: str
    name: str
    email: str | None = None


def new_notification_id() -> str:
    """A fresh notification id: `msg_` and 32 hex digits."""
    return f"msg_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Notification:
    """What a channel sends.

    `id` stays the same across retries of the same message (it is the webhook's
    `webhook-id` and CloudEvents `id`, the email's Message-ID), and holds no `.` (Standard
    Webhooks signs `{id}.{timestamp}.{body}`). `group_key` names the group it speaks for:
    PagerDuty's `dedup_key`, so that a later `resolved` notification of the same group
    closes the incident its `firing` one opened; `opens` says it is the group's first (an
    incident is yet to be opened, even if it is acknowledged already). `count` is how many
    alike occurrences it stands for. `details` are labelled facts (process, stage, system,
    amount, …), shown as fields and sent as data. `owner` is the person an assignment is
    for: an email channel with `to_owner` writes to them, a Slack one names them.
    """

    id: str
    event: str  # an alerts.events.EventType, or TEST_EVENT
    title: str
    text: str
    link: str
    time: datetime
    status: Status = "firing"
    opens: bool = False
    severity: Impact | None = None
    correlation_id: str | None = None
    group_key: str = ""
    count: int = 1
    details: Mapping[str, str | int | float] = field(default_factory=dict)
    # Who it is for, read at delivery time (alerts.addressing); never kept in the log.
    owner: Owner | None = None

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise ValueError(f"notification id {self.id!r}: use letters, digits, _ and -")
        if self.time.tzinfo is None:
            raise ValueError("a notification's time must carry its time zone")
        if self.count < 1:
            raise ValueError("a notification stands for at least one occurrence")

    @property
    def dedup_key(self) -> str:
        """The group's identity, or the notification's own when it speaks for no group."""
        return self.group_key or self.id

    def headline(self) -> str:
        """One line: state, impact, title and how many, as a subject or a summary."""
        impact = f"[{self.severity}] " if self.severity else ""
        times = f" ({self.count:,} occurrences)" if self.count > 1 else ""
        # An assignment is an acknowledgement: "Acknowledged: … assigned" says it twice.
        state = (
            ""
            if self.event == "exception.assigned" and self.status == "acknowledged"
            else (_STATUS_PREFIX[self.status])
        )
        return f"{state}{impact}{self.title}{times}"

"""What a group's notification says: its title, its counts, its facts and the console link
of what it is about, as an `alerts.notification.Notification`; and that notification as
the notification log keeps it (JSON), to be sent the same on every attempt."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from alerts.events import Status
from alerts.links import console_link
from alerts.notification import Notification, new_notification_id
from q2c.vocabulary import IMPACTS

_TITLES = {
    "exception.opened": "Exception opened",
    "exception.assigned": "Exception assigned",
    "exception.unassigned": "Exception unassigned",
    "exception.overdue": "Exception overdue",
    "exception.regressed": "Exception regressed",
    "exception.resolved": "Exception resolved",
    "exception.auto_resolved": "Exception auto-resolved",
    "exception.reopened": "Exception reopened",
    "slo.alert": "SLO alert",
    "replay.failed": "Replay failed",
    "dead_letter.created": "Message dead-lettered",
    "digest": "Digest",
}
# The facts a message shows, in this order, when every event of the group has them.
_SHOWN = (
    "impact",
    "kind",
    "process",
    "stage",
    "system",
    "owner",
    "error_type",
    "amount",
    "currency",
    "legal_entity",
    "fingerprint",
    "state",
)
# The exceptions page's filters that a group's labels may fill in (console/app_pages).
_FILTERS = ("process", "stage", "system", "kind", "owner")


@dataclass(frozen=True)
class GroupView:
    """A due group as the flush read it: its labels and counts, and the latest event's."""

    id: int
    state: Status
    labels: dict[str, Any]
    events: int
    unsent_events: int
    members: int
    open_members: int
    acknowledged_members: int
    last_type: str
    last_facts: dict[str, Any]
    dead_letter_id: int | None
    exception_id: int | None  # one of its exceptions
    told_state: Status | None = None  # what its last notification said; None: none yet


def dedup_key(group_id: int) -> str:
    """The group's key in every notification about it (PagerDuty's dedup_key)."""
    return f"q2c-group-{group_id}"


def compose(group: GroupView, base: str, now: datetime) -> Notification:
    """The notification of `group` as of `now`, linking into the console at `base`."""
    labels = group.labels
    count = group.members or group.events
    impact = labels.get("impact")
    return Notification(
        id=new_notification_id(),
        event=labels.get("event", group.last_type),
        title=_title(group),
        text=_text(group),
        link=_link(group, base),
        time=now,
        status=group.state,
        opens=group.told_state is None,
        severity=impact if impact in IMPACTS else None,
        correlation_id=labels.get("correlation_id"),  # when all its events share one
        group_key=dedup_key(group.id),
        count=count,
        details={key: labels[key] for key in _SHOWN if labels.get(key) is not None},
    )


def _title(group: GroupView) -> str:
    labels = group.labels
    what = _TITLES.get(labels.get("event", ""), "Alerts")
    where = "/".join(str(labels[key]) for key in ("process", "stage") if labels.get(key))
    if labels.get("system"):
        where += f" on {labels['system']}" if where else str(labels["system"])
    return f"{what}: {where}" if where else what


def _text(group: GroupView) -> str:
    """The message: what happened, and how many of what it is about are still open."""
    facts = group.last_facts
    lines = [str(facts["message"])] if facts.get("message") else []
    if group.last_type == "slo.alert":
        rates = ", ".join(  # a window without events has no rate
            f"{w} {'—' if r is None else f'{r:g}x'}"
            for w, r in (facts.get("burn_rates") or {}).items()
        )
        lines.append(f"{facts.get('previous', 'ok')} → {facts.get('state')}; burn rates {rates}")
    if group.exception_id is not None:
        closed = group.members - group.open_members
        lines.append(
            f"{group.members:,} exception{'s' if group.members != 1 else ''}: "
            f"{group.open_members - group.acknowledged_members:,} open, "
            f"{group.acknowledged_members:,} acknowledged, {closed:,} closed"
        )
    if group.unsent_events and group.unsent_events != group.events:
        lines.append(f"{group.unsent_events:,} new events since the last notification")
    return "\n".join(lines) or _TITLES.get(group.last_type, group.last_type)


def _link(group: GroupView, base: str) -> str:
    """The object the group is about: its one exception, else the list of its kind, its
    dead letter, its SLO's process, its transaction, else the overview."""
    labels = group.labels
    if group.exception_id is not None and group.members == 1:
        return console_link(base, "exceptions", id=group.exception_id)
    if group.exception_id is not None:
        filters = {key: str(labels[key]) for key in _FILTERS if labels.get(key)}
        return console_link(base, "exceptions", grouped="yes", **filters)
    if group.dead_letter_id is not None:
        return console_link(base, "dead_letters", id=group.dead_letter_id)
    if group.last_type == "slo.alert" and labels.get("process"):
        return console_link(base, "stages", process=str(labels["process"]))
    if labels.get("correlation_id"):
        return console_link(base, "explorer", q=str(labels["correlation_id"]))
    return console_link(base)


def stored(notification: Notification) -> dict[str, Any]:
    """`notification` as JSON for the notification log."""
    kept = asdict(notification)
    del kept["owner"]  # read anew at each delivery: an address may change meanwhile
    kept["time"] = notification.time.isoformat()
    kept["details"] = dict(notification.details)
    return kept


def restored(kept: dict[str, Any]) -> Notification:
    """The notification `stored` kept."""
    return Notification(**{**kept, "time": datetime.fromisoformat(kept["time"])})

"""What `q2c alerts test CHANNEL` sends: a notification that says it is a test and links to
the console. To a stateful receiver (PagerDuty) its resolve follows, so that no test
incident stays open."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from alerts.config import ChannelConfig, PagerDutyChannel
from alerts.events import TEST_EVENT
from alerts.links import console_link
from alerts.notification import Notification, new_notification_id


def test_notifications(
    name: str, channel: ChannelConfig, console_url: str, now: datetime | None = None
) -> list[Notification]:
    """The notifications that test channel `name`, in the order to send them."""
    identity = new_notification_id()
    firing = Notification(
        id=identity,
        event=TEST_EVENT,
        title=f"Test notification from Q2C Console to {name}",
        text=f"If you can read this, the channel {name!r} ({channel.type}) delivers. "
        "Nothing needs doing.",
        link=console_link(console_url),
        time=now or datetime.now(UTC),
        severity="low",
        group_key=identity,  # the resolve below closes what this one opens
        details={"channel": name, "type": channel.type},
    )
    if not isinstance(channel, PagerDutyChannel):
        return [firing]
    return [firing, replace(firing, id=new_notification_id(), status="resolved")]

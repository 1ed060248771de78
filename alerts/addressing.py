"""Who a notification is for: the owner of an assignment, read from the users table when
it is delivered (not when it was composed), so that a message goes to the address the
owner has now."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg

from alerts.notification import Notification, Owner

# Events told to the person they concern (alerts.yaml `to_owner`, Slack's mention).
OWNED_EVENTS = ("exception.assigned",)

# A disabled user is told nothing: they keep their name, not their address.
_OWNER = """
SELECT username, coalesce(nullif(display_name, ''), username) AS name,
       CASE WHEN NOT disabled THEN nullif(email, '') END AS email
FROM users WHERE username = %(username)s
"""


def addressed(conn: psycopg.Connection[Any], notification: Notification) -> Notification:
    """`notification` with its `owner` as the users table has them now, when it is an
    assignment that names one; as it is otherwise. An owner who is no user any more is
    still named, without an address."""
    username = notification.details.get("owner")
    if notification.event not in OWNED_EVENTS or not isinstance(username, str):
        return notification
    row = conn.execute(_OWNER, {"username": username}).fetchone()
    owner = Owner(*row) if row is not None else Owner(username, username)
    return dataclasses.replace(notification, owner=owner)

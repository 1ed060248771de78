"""Roles and what each may do; every command checks here, on the server side.

Roles are cumulative: each has everything the one before it has.
"""

from __future__ import annotations

from q2c.errors import Q2CError
from q2c.vocabulary import ROLES

# permission → the least role that holds it, and how a refusal describes the action
PERMISSIONS: dict[str, tuple[str, str]] = {
    "dashboards.view": ("viewer", "viewing dashboards"),
    "exceptions.view": ("finance_ops", "viewing exceptions"),
    "transactions.view": ("finance_ops", "following transactions in the trace explorer"),
    "exceptions.act": ("finance_ops", "assigning, commenting on, resolving or ignoring exceptions"),
    "dead_letters.view": ("oncall", "viewing dead letters and their payloads"),
    "replays.request": ("oncall", "requesting replays"),
    "replays.edit_payload": ("oncall", "editing a payload before replay"),
    "dead_letters.discard": ("oncall", "discarding dead letters"),
    "users.manage": ("admin", "managing users"),
    "policies.view": ("admin", "viewing SLA policies"),
    "audit.view": ("admin", "reading the audit log"),
    "alerts.view": ("finance_ops", "viewing alerting and the notification log"),
    "alerts.test": ("oncall", "sending test notifications"),
    "silences.view": ("viewer", "viewing silences"),
    "silences.manage": ("oncall", "silencing notifications and ending silences"),
    "reconciliation.view": ("finance_ops", "viewing reconciliation runs and breaks"),
    "reconciliation.accept": ("finance_ops", "accepting a known reconciliation difference"),
}


class PermissionDenied(Q2CError):
    """The acting user's role does not allow the action; the message names the role needed."""


class UnknownUser(Q2CError):
    """The acting user does not exist or is disabled."""


def allows(role: str, permission: str) -> bool:
    """Whether `role` holds `permission`."""
    needed, _ = PERMISSIONS[permission]
    return ROLES.index(role) >= ROLES.index(needed)


def require(username: str, role: str, permission: str) -> None:
    """Raise PermissionDenied unless `role` holds `permission`."""
    if not allows(role, permission):
        needed, action = PERMISSIONS[permission]
        raise PermissionDenied(f"{action} needs the {needed} role or higher; {username} is {role}")

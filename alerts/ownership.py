"""Ownership rules (alerts.yaml `owners`): a new exception is assigned to the owner of the
first rule it matches whose owner is an enabled user (a rule naming someone unknown or
disabled is passed over, and logged), as the system, the audit row naming the rule. The
assignment is a change like a person's, so its `exception.assigned` event (migration 0017)
reaches the routes that tell the new owner.

A new exception is one whose `exception.opened` event is not routed yet, still open and
nobody's: rules are applied before the routing of a pass, so the opening and the
assignment are told together. Replicas may apply them at once: an assignment takes only an
exception still nobody's (the UPDATE says so again under its row lock), so each is assigned
once and audited once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text

from alerts.config import AlertsConfig, OwnerRule
from alerts.matching import event_labels, matches
from queries.audit import record_exception_event
from queries.roles import UnknownUser
from queries.users import acting_user

log = logging.getLogger(__name__)

BATCH = 1000  # new exceptions considered per pass (the rest wait for the next one)

_NEW = text(
    "SELECT e.correlation_id, e.id, q2c_event_facts(a) AS facts FROM alert_events a "
    "JOIN exceptions e ON e.correlation_id = a.correlation_id AND e.id = a.exception_id "
    "WHERE a.routed_at IS NULL AND a.type = 'exception.opened' "
    "AND e.owner IS NULL AND e.status = 'open' ORDER BY a.id LIMIT :limit"
)
_ASSIGN = text(
    "UPDATE exceptions SET owner = :owner, status = 'assigned', updated_at = now() "
    "WHERE correlation_id = :c AND id = :id AND owner IS NULL AND status = 'open' "
    "RETURNING id"
)


@dataclass
class OwnershipReport:
    """Exception id → the owner it was given; `unknown`: owners named that are no (enabled)
    user, whose exceptions stay in the queue."""

    assigned: dict[int, str] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)


def assign_owners(engine: Engine, config: AlertsConfig) -> OwnershipReport:
    """Apply the ownership rules to the new exceptions, in one transaction."""
    report = OwnershipReport()
    if not config.owners:
        return report
    with engine.begin() as conn:
        for correlation_id, exception_id, facts in conn.execute(_NEW, {"limit": BATCH}):
            labels = event_labels("exception.opened", correlation_id, facts)
            for number, rule in enumerate(config.owners, 1):
                if matches(rule.match, labels) and _assign(
                    conn, correlation_id, exception_id, number, rule, report
                ):
                    break
    if report.unknown:
        log.warning(
            "ownership rules name users who are unknown or disabled: %s (their exceptions "
            "go to the next rule that matches, else stay in the queue)",
            ", ".join(sorted(report.unknown)),
        )
    return report


def _assign(
    conn: Connection,
    correlation_id: str,
    exception_id: int,
    number: int,
    rule: OwnerRule,
    report: OwnershipReport,
) -> bool:
    """Assign the exception by rule `number`; False when its owner is no enabled user (the
    next matching rule is tried), True when it is done (assigned, or someone took it)."""
    if rule.owner in report.unknown:
        return False
    try:
        owner = acting_user(conn, rule.owner).username
    except UnknownUser:
        report.unknown.add(rule.owner)
        return False
    taken = conn.execute(_ASSIGN, {"owner": owner, "c": correlation_id, "id": exception_id})
    if taken.one_or_none() is None:  # someone (or another replica) took it meanwhile
        return True
    record_exception_event(
        conn,
        correlation_id,
        exception_id,
        "system",
        "assigned",
        before={"owner": None, "status": "open"},
        after={"owner": owner, "status": "assigned"},
        comment=f"ownership rule {number} of alerts.yaml ({rule.match.describe()})",
    )
    report.assigned[exception_id] = owner
    return True

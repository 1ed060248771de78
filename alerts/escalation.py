"""Escalations (alerts.yaml `escalations`): an open exception matching a step's `match`
that nobody has acknowledged (assigned or in progress) `unacknowledged_after` it was
opened (its `exception.opened` event, written when it was classified) is told to the
step's `to`, once per step.

How it reaches the channels: through a group of its own, not through the groups of the
routes. A route's group is told on the route's timing to the route's channels, and its
PagerDuty incident is the one already open; an escalation is news to someone else, now.
So each pass writes, per step and fingerprint, one group already told and closed (the flush
never reads it again), its members the exceptions escalated, and one notification per
channel of the step in the notification log: delivery, retries, silences and maintenance
windows treat it as any other (they match the group's labels), the log shows it, and a
storm of alike exceptions is escalated as one notification saying how many. To PagerDuty
it is a new incident (the new group's dedup key): the page the escalation is for.

Once across replicas: each (exception, step) has its row in `alert_escalations` (migration
0019), inserted with ON CONFLICT DO NOTHING in the transaction that writes the
notifications; the pass runs under the router's lock (alerts/run.py), and without it a
writer that finds a row taken rolls its group back to a savepoint, telling nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row

from alerts.compose import GroupView, compose
from alerts.config import AlertsConfig, Escalation
from alerts.flush import ACKNOWLEDGED_STATUSES
from alerts.matching import Labels, common_labels, event_labels
from alerts.told import Told, tell_once
from q2c.durations import duration_text
from q2c.vocabulary import sql_list

BATCH = 1000  # exceptions considered per step and pass (the rest wait for the next one)

# Open exceptions nobody took, opened at least `after` ago, not yet escalated at this step,
# matching the step's `match` (each of its keys is a column of exceptions: kind, impact,
# process, stage, system; NULL where the step does not say). Judged as they are now: one
# reclassified since it opened is escalated by its new impact. The match is in SQL, so that
# exceptions it leaves out never fill a batch.
_DUE = f"""
SELECT e.correlation_id, e.id, a.id AS event_id, a.occurred_at,
       q2c_exception_facts(e) AS facts
FROM alert_events a
JOIN exceptions e ON e.correlation_id = a.correlation_id AND e.id = a.exception_id
WHERE a.type = 'exception.opened' AND a.occurred_at <= %(since)s
  AND q2c_is_open(e.status) AND e.status NOT IN {sql_list(ACKNOWLEDGED_STATUSES)}
  AND (%(kind)s::text[] IS NULL OR e.kind = ANY(%(kind)s))
  AND (%(impact)s::text[] IS NULL OR e.impact = ANY(%(impact)s))
  AND (%(process)s::text[] IS NULL OR e.process = ANY(%(process)s))
  AND (%(stage)s::text[] IS NULL OR e.stage = ANY(%(stage)s))
  AND (%(system)s::text[] IS NULL OR e.system = ANY(%(system)s))
  AND NOT EXISTS (SELECT 1 FROM alert_escalations s
                  WHERE s.exception_id = e.id AND s.step = %(step)s)
ORDER BY a.id
LIMIT %(limit)s
"""

_STEP = """
INSERT INTO alert_escalations (exception_id, step, correlation_id, group_id, escalated_at)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""


@dataclass
class EscalationReport:
    """Step (its place in alerts.yaml, from 1) → the exceptions escalated at it; `groups`
    the groups written."""

    escalated: dict[int, list[int]] = field(default_factory=dict)
    groups: list[int] = field(default_factory=list)


def escalate(
    conn: psycopg.Connection, config: AlertsConfig, base: str, now: datetime
) -> EscalationReport:
    """Take every due escalation step as of `now`, in the caller's transaction; messages
    link into the console at `base`."""
    report = EscalationReport()
    cur = conn.cursor(row_factory=namedtuple_row)
    for step, escalation in enumerate(config.escalations, 1):
        match = {key: list(values) if values else None for key, values in escalation.match}
        due: list[Any] = cur.execute(
            _DUE,
            {
                "since": now - escalation.unacknowledged_after,
                "step": step,
                "limit": BATCH,
                **match,
            },
        ).fetchall()
        alike: dict[Any, list[Any]] = defaultdict(list)
        for row in due:
            labels = event_labels("exception.opened", row.correlation_id, row.facts)
            alike[labels.get("fingerprint")].append((row, labels))
        for fingerprint, rows in alike.items():
            group_id = _escalate(cur, step, escalation, fingerprint, rows, base, now)
            if group_id is None:
                continue
            report.groups.append(group_id)
            report.escalated.setdefault(step, []).extend(row.id for row, _ in rows)
    return report


def _escalate(
    cur: psycopg.Cursor[Any],
    step: int,
    escalation: Escalation,
    fingerprint: Any,
    rows: list[Any],
    base: str,
    now: datetime,
) -> int | None:
    labels: Labels = rows[0][1]
    for _, more in rows[1:]:
        labels = common_labels(labels, more)
    events = sorted((row.event_id, row.occurred_at) for row, _ in rows)
    told = Told(
        route=f"escalation:{step}",
        key={"step": step, "fingerprint": fingerprint, "at": now.isoformat()},
        labels=labels,
        first_event=events[0],
        last_event=events[-1],
        events=len(rows),
        members=[(row.correlation_id, row.id) for row, _ in rows],
    )
    view = GroupView(
        id=0,
        state="firing",
        labels=labels,
        events=len(rows),
        unsent_events=len(rows),
        members=len(rows),
        open_members=len(rows),
        acknowledged_members=0,
        last_type="exception.opened",
        last_facts=rows[-1][1],
        dead_letter_id=None,
        exception_id=rows[0][0].id,
    )
    plain = compose(view, base, now)
    after = duration_text(escalation.unacknowledged_after)
    notification = replace(
        plain,
        title=f"Escalation {step}, unacknowledged after {after}: {plain.title}",
        text=f"Nobody has taken it {after} after it opened.\n{plain.text}",
    )
    try:
        with cur.connection.transaction():  # a savepoint: all of these, or none
            group_id = tell_once(cur, told, notification, escalation.to, now)
            for row, _ in rows:
                if not cur.execute(
                    _STEP, (row.id, step, row.correlation_id, group_id, now)
                ).rowcount:
                    raise _Taken
    except _Taken:  # another writer took one of them: the next pass sees the rest again
        return None
    return group_id


class _Taken(Exception):
    """An (exception, step) was escalated meanwhile."""

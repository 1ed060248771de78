"""Digests (alerts.yaml `digests`): on each digest's cron schedule, in alerts.yaml's
`timezone`, a report sent to its channels once per scheduled occurrence: `aging` (open
exceptions by impact and age, the overdue ones, the largest amounts at risk) for finance,
`kpis` (the KPIs against the previous period) for the CIO. Each links into the console.

An occurrence is sent by the first pass at or after it, within DUE_WITHIN (a digest
missed for longer, while no scheduler ran, is skipped, not sent hours late). It is
recorded as a `digest` event in the outbox (already routed: routes do not tell it again)
and told through a group of its own, as escalations are (alerts/escalation.py `tell_once`):
one notification per channel in the notification log, delivered, retried and suppressed
like any other. Once across replicas: `alert_digest_runs` (migration 0019) holds one row per
digest and occurrence, inserted in the same transaction, under the router's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import Engine

from alerts.config import AlertsConfig, Digest
from alerts.links import console_link
from alerts.notification import Notification, new_notification_id
from alerts.told import Told, tell_once
from q2c.cron import next_run
from q2c.vocabulary import IMPACTS
from queries.kpi_document import ComparisonKpis, KpiDocument
from queries.kpis import AGE_EDGES, AGING_BUCKETS, collect_kpis, comparison_kpis
from sla.policy import Policy

DUE_WITHIN = timedelta(hours=1)  # how late an occurrence may still be sent
SHOWN = 5  # overdue exceptions and largest amounts listed by name

_DONE = "SELECT 1 FROM alert_digest_runs WHERE digest = %s AND occurrence = %s"
_EVENT = """
INSERT INTO alert_events (type, facts, occurred_at, routed_at)
VALUES ('digest', %(facts)s, %(now)s, %(now)s)
RETURNING id
"""
_RUN = """
INSERT INTO alert_digest_runs (digest, occurrence, group_id, sent_at)
VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING
"""
_BY_IMPACT_AND_AGE = """
SELECT impact, width_bucket(extract(epoch FROM %(now)s - first_seen)::float8,
                            %(edges)s::float8[]) AS bucket, count(*) AS n
FROM exceptions WHERE q2c_is_open(status) GROUP BY 1, 2
"""
_OVERDUE = """
SELECT count(*) FROM exceptions
WHERE q2c_is_open(status) AND due_at IS NOT NULL AND due_at < %(now)s
"""
_OLDEST_OVERDUE = """
SELECT id, impact, process, stage, due_at FROM exceptions
WHERE q2c_is_open(status) AND due_at IS NOT NULL AND due_at < %(now)s
ORDER BY due_at, id LIMIT %(shown)s
"""
_AT_RISK = """
SELECT coalesce(currency, '') AS currency, sum(amount)::float8 AS total, count(*) AS n
FROM exceptions WHERE q2c_is_open(status) AND amount IS NOT NULL
GROUP BY 1 ORDER BY total DESC
"""
_LARGEST = """
SELECT id, amount::float8 AS amount, coalesce(currency, '') AS currency, process, stage
FROM exceptions WHERE q2c_is_open(status) AND amount IS NOT NULL
ORDER BY amount DESC NULLS LAST, id LIMIT %(shown)s
"""


def due_occurrence(digest: Digest, config: AlertsConfig, now: datetime) -> datetime | None:
    """The latest scheduled time of `digest` within DUE_WITHIN before `now` (inclusive),
    or None when there is none."""
    fire = next_run(digest.schedule, config.zone, now - DUE_WITHIN)
    if fire > now:
        return None
    while (later := next_run(digest.schedule, config.zone, fire + timedelta(seconds=1))) <= now:
        fire = later
    return fire


@dataclass
class DigestReport:
    """Digest name → the occurrence sent in this pass."""

    sent: dict[str, datetime] = field(default_factory=dict)


def send_digests(
    conn: psycopg.Connection,
    engine: Engine,
    config: AlertsConfig,
    base: str,
    now: datetime,
    policy: Callable[[], Policy],
) -> DigestReport:
    """Send every digest due as of `now` and not yet sent, in the caller's transaction
    (which holds the router's lock); `policy` gives sla.yaml for the KPIs; messages link
    into the console at `base`."""
    report = DigestReport()
    for digest in config.digests:
        occurrence = due_occurrence(digest, config, now)
        if occurrence is None or conn.execute(_DONE, (digest.name, occurrence)).fetchone():
            continue
        if digest.content == "aging":
            text, facts = _aging(conn, base, now)
        else:
            text, facts = _kpis(engine, policy(), digest, config, occurrence)
        if _send(conn, digest, occurrence, text, facts, base, now):
            report.sent[digest.name] = occurrence
    return report


def _send(
    conn: psycopg.Connection,
    digest: Digest,
    occurrence: datetime,
    text: str,
    facts: dict[str, Any],
    base: str,
    now: datetime,
) -> bool:
    labels = {"event": "digest", "digest": digest.name, "content": digest.content}
    title = f"Digest {digest.name}: {_TITLES[digest.content]}"
    notification = Notification(
        id=new_notification_id(),
        event="digest",
        title=title,
        text=text,
        link=console_link(base, "exceptions" if digest.content == "aging" else ""),
        time=now,
        details={k: v for k, v in facts.items() if isinstance(v, str | int | float)},
    )
    cur = conn.cursor()
    try:
        with conn.transaction():  # a savepoint: the event, the group and the run, or none
            _record(cur, digest, occurrence, labels, facts, notification, now)
    except _AlreadySent:  # another writer sent it meanwhile
        return False
    return True


def _record(
    cur: psycopg.Cursor[Any],
    digest: Digest,
    occurrence: datetime,
    labels: dict[str, Any],
    facts: dict[str, Any],
    notification: Notification,
    now: datetime,
) -> None:
    """Write the digest event, its group and notifications, and the run."""
    event = cur.execute(
        _EVENT,
        {
            "facts": Jsonb({**labels, "occurrence": occurrence.isoformat(), "figures": facts}),
            "now": now,
        },
    ).fetchone()
    assert event is not None
    told = Told(
        route=f"digest:{digest.name}",
        key={"digest": digest.name, "occurrence": occurrence.isoformat()},
        labels=labels,
        first_event=(event[0], now),
        last_event=(event[0], now),
        events=1,
    )
    group_id = tell_once(cur, told, notification, digest.to, now)
    if not cur.execute(_RUN, (digest.name, occurrence, group_id, now)).rowcount:
        raise _AlreadySent


class _AlreadySent(Exception):
    """The occurrence was sent meanwhile."""


_TITLES = {"aging": "open exceptions by impact and age", "kpis": "KPIs against the last period"}


def _aging(conn: psycopg.Connection, base: str, now: datetime) -> tuple[str, dict[str, Any]]:
    """The finance digest: its text and its figures."""
    cur: psycopg.Cursor[Any] = conn.cursor(row_factory=namedtuple_row)
    counts: dict[str, dict[str, int]] = {}
    for row in cur.execute(_BY_IMPACT_AND_AGE, {"now": now, "edges": list(AGE_EDGES)}):
        by_age = counts.setdefault(row.impact, dict.fromkeys(AGING_BUCKETS, 0))
        by_age[AGING_BUCKETS[row.bucket]] += row.n
    total = sum(sum(by_age.values()) for by_age in counts.values())
    overdue_row = cur.execute(_OVERDUE, {"now": now}).fetchone()
    overdue: int = overdue_row[0] if overdue_row else 0
    oldest = cur.execute(_OLDEST_OVERDUE, {"now": now, "shown": SHOWN}).fetchall()
    at_risk = cur.execute(_AT_RISK).fetchall()
    largest = cur.execute(_LARGEST, {"shown": SHOWN}).fetchall()

    lines = [f"Open exceptions: {total:,}, overdue {overdue:,}", "", "By impact and age:"]
    lines.append("  ".join(["impact".ljust(9), *(b.rjust(6) for b in AGING_BUCKETS)]))
    for impact in sorted(counts, key=_impact_order):
        by_age = counts[impact]
        lines.append("  ".join([str(impact).ljust(9), *(f"{n:6,}" for n in by_age.values())]))
    if oldest:
        lines += ["", f"Oldest overdue ({len(oldest)} of {overdue:,}):"]
        for row in oldest:
            lines.append(
                f"- #{row.id} {row.impact} {row.process}/{row.stage}, due "
                f"{row.due_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC: "
                f"{console_link(base, 'exceptions', id=row.id)}"
            )
    if at_risk:
        lines += ["", "Amounts at risk:"]
        for row in at_risk:
            lines.append(f"- {row.total:,.2f} {row.currency or '(no currency)'} in {row.n:,}")
        lines.append("Largest:")
        for row in largest:
            lines.append(
                f"- {row.amount:,.2f} {row.currency} #{row.id} {row.process}/{row.stage}: "
                f"{console_link(base, 'exceptions', id=row.id)}"
            )
    facts: dict[str, Any] = {"open": total, "overdue": overdue}
    facts.update({f"at_risk_{r.currency or 'none'}": round(r.total, 2) for r in at_risk})
    facts["by_impact_and_age"] = counts
    return "\n".join(lines), facts


def _kpis(
    engine: Engine, policy: Policy, digest: Digest, config: AlertsConfig, occurrence: datetime
) -> tuple[str, dict[str, Any]]:
    """The CIO digest: the KPIs of the period that ended at `occurrence` (as long as the
    schedule's period), against the period before."""
    period = next_run(digest.schedule, config.zone, occurrence + timedelta(seconds=1)) - occurrence
    occurrence = occurrence.astimezone(UTC)  # the text names its window in UTC
    current = collect_kpis(engine, policy, period, occurrence)
    previous = comparison_kpis(engine, policy, period, occurrence - period)
    return _kpi_text(current, previous), _kpi_facts(current, previous)


def _change(now: float | None, before: float | None, unit: str = "") -> str:
    if now is None:
        return "—"
    if before is None:
        return f"{now:,.2f}{unit} (no figure before)"
    return f"{now:,.2f}{unit} ({now - before:+,.2f}{unit} on the period before)"


def _kpi_text(current: KpiDocument, previous: ComparisonKpis) -> str:
    window = current["window"]
    lines = [f"KPIs from {window['start'][:16]} to {window['end'][:16]} UTC", ""]
    for name, headline in current["latency"].items():
        before = previous["latency"].get(name)
        p95, was = headline["p95_ms"], before["p95_ms"] if before else None
        lines.append(
            f"{headline['title']}: p95 {_change(_seconds(p95), _seconds(was), 's')}, "
            f"{headline['count']:,} done"
        )
    replays, replays_before = current["replays"], previous["replays"]
    rate, rate_before = replays["success_rate"], replays_before["success_rate"]
    lines.append(
        f"Replays: {replays['requested']:,} requested (was {replays_before['requested']:,}), "
        f"success {_change(_pct(rate), _pct(rate_before), '%')}"
    )
    auto, auto_before = current["exceptions"]["auto_resolved_pct"], previous["auto_resolved_pct"]
    lines.append(f"Auto-resolved: {_change(auto, auto_before, '%')} of resolved")
    exceptions = current["exceptions"]
    lines.append(f"Open exceptions: {exceptions['open']:,}, overdue {exceptions['overdue']:,}")
    for name, process in current["processes"].items():
        sla = process["sla"]
        lines.append(
            f"{name}: SLA {_pct_text(sla['compliance'])}, "
            f"alert {sla['alert_state']}, {process['errors']:,} errors"
        )
    money = current["money_at_risk"]["erp_bound_this_month"]
    blocking = ", ".join(f"{m['amount']:,.2f} {m['currency']}" for m in money)
    lines.append(f"Money at risk on ERP-bound stages this month: {blocking or 'none'}")
    return "\n".join(lines)


def _kpi_facts(current: KpiDocument, previous: ComparisonKpis) -> dict[str, Any]:
    return {
        "open": current["exceptions"]["open"],
        "overdue": current["exceptions"]["overdue"],
        "replays": current["replays"]["requested"],
        "replays_before": previous["replays"]["requested"],
        "window_seconds": current["window"]["seconds"],
    }


def _impact_order(impact: str) -> int:
    return IMPACTS.index(impact) if impact in IMPACTS else len(IMPACTS)


def _pct_text(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value

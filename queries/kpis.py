"""KPI readers: the figures behind `q2c kpis` and the console's overview, from rollups and
the (indexed, bounded) open-exception, reconciliation and replay sets — never raw spans.

The returned shape is documented in docs/kpis.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from sqlalchemy import Connection, Engine, bindparam, text

from q2c.vocabulary import CLOSED_STATUSES, IMPACTS, OPEN_STATUSES, ExceptionStatus, Impact
from queries.kpi_document import (
    Accuracy,
    BadEvents,
    BurnAlert,
    ComparisonKpis,
    ExceptionKpis,
    Headline,
    KpiDocument,
    Latency,
    MoneyAtRisk,
    PairAccuracy,
    ProcessKpis,
    Reconciliation,
    RecordsReconciliation,
    ReplayKpis,
    Slo,
)
from sla import histogram
from sla.histogram import PERCENTILES
from sla.policy import Policy

_IMPACTS = f"ARRAY{list(IMPACTS)}"  # most urgent first, for array_position
AGING_BUCKETS = ("< 1h", "1-4h", "4-24h", "1-3d", "> 3d")
# Where each bucket after the first begins, in seconds of age (width_bucket's bounds).
AGE_EDGES = (3600.0, 4 * 3600.0, 86400.0, 3 * 86400.0)
# Multi-window burn-rate alerts (Google SRE workbook): long window, short window, factor.
# The Google SRE workbook's multiwindow burn-rate rules: both windows of a pair burning
# faster than the factor fire the alert; a page wakes someone, a ticket waits for the day.
BURN_ALERTS = (
    ("1h", timedelta(hours=1), "5m", timedelta(minutes=5), 14.4, "page"),
    ("6h", timedelta(hours=6), "30m", timedelta(minutes=30), 6.0, "page"),
    ("1d", timedelta(days=1), "2h", timedelta(hours=2), 3.0, "ticket"),
    ("3d", timedelta(days=3), "6h", timedelta(hours=6), 1.0, "ticket"),
)

_DAY = 86_400
# Whole UTC days inside the window come from daily rows, the edges from 5-minute rows.
_WINDOW = """
((bucket_seconds = 86400 AND bucket_start >= :day_lo AND bucket_start < :day_hi)
 OR (bucket_seconds = 300 AND ((bucket_start >= :start AND bucket_start < :edge_lo)
                               OR (bucket_start >= :edge_hi AND bucket_start < :end))))
"""
_ROLLUP_COUNTS = text(
    f"SELECT process, from_stage, to_stage, sum(count)::bigint, sum(error_count)::bigint "
    f"FROM rollups WHERE {_WINDOW} GROUP BY 1, 2, 3"
)
_ROLLUP_HISTOGRAMS = text(
    f"SELECT r.process, r.from_stage, r.to_stage, b.key::integer, sum(b.value::bigint)::bigint "
    f"FROM rollups r, jsonb_each_text(r.histogram) AS b WHERE r.from_stage <> '' AND {_WINDOW} "
    f"GROUP BY 1, 2, 3, 4"
)


def window_bounds(start: datetime, end: datetime) -> dict[str, datetime]:
    """Parameters of _WINDOW: the whole days inside [start, end) and the edges around them."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    day = timedelta(days=1)
    day_lo = epoch + -((epoch - start) // day) * day  # first midnight at or after start
    day_hi = epoch + ((end - epoch) // day) * day  # last midnight at or before end
    if day_lo >= day_hi:  # no whole day: 5-minute rows only
        return {
            "start": start,
            "end": end,
            "day_lo": start,
            "day_hi": start,
            "edge_lo": end,
            "edge_hi": end,
        }
    return {
        "start": start,
        "end": end,
        "day_lo": day_lo,
        "day_hi": day_hi,
        "edge_lo": day_lo,
        "edge_hi": day_hi,
    }


class RollupWindow:
    """Counts, errors and merged histograms per (process, from stage, to stage) in a window."""

    def __init__(self, conn: Connection, start: datetime, end: datetime) -> None:
        params = window_bounds(start, end)
        self.counts: dict[tuple[str, str, str], tuple[int, int]] = {
            (p, f, t): (n, e) for p, f, t, n, e in conn.execute(_ROLLUP_COUNTS, params)
        }
        self.histograms: dict[tuple[str, str, str], dict[int, int]] = defaultdict(dict)
        for p, f, t, bucket, n in conn.execute(_ROLLUP_HISTOGRAMS, params):
            self.histograms[(p, f, t)][bucket] = n

    def latency(self, process: str, from_stage: str, to_stage: str) -> Latency:
        """Count and percentiles (ms) of one stage pair."""
        hist = self.histograms.get((process, from_stage, to_stage), {})
        p50, p90, p95, p99 = (histogram.percentile(hist, q) for q in PERCENTILES)
        return {
            "from": from_stage,
            "to": to_stage,
            "count": sum(hist.values()),
            "p50_ms": p50,
            "p90_ms": p90,
            "p95_ms": p95,
            "p99_ms": p99,
        }

    def reached(self, process: str, stage: str) -> int:
        """Transactions that reached `stage` in the window."""
        return self.counts.get((process, "", stage), (0, 0))[0]

    def errors(self, process: str, stage: str) -> int:
        """Failures first seen at `stage` in the window."""
        return self.counts.get((process, "", stage), (0, 0))[1]

    def good_and_total(
        self, process: str, from_stage: str, to_stage: str, limit_ms: float
    ) -> tuple[int, int]:
        """Pairs completed within `limit_ms`, and all completed pairs."""
        hist = self.histograms.get((process, from_stage, to_stage), {})
        return histogram.count_within(hist, limit_ms), sum(hist.values())


def rollup_window(engine: Engine, start: datetime, end: datetime) -> RollupWindow:
    """The rollups of [start, end), read on a connection of its own."""
    with engine.connect() as conn:
        return RollupWindow(conn, start, end)


def _headlines(policy: Policy, current: RollupWindow) -> dict[str, Headline]:
    return {
        h.name: {
            "title": h.title,
            "process": h.process,
            "percentiles": h.percentiles,
            **current.latency(h.process, h.from_stage, h.to_stage),
        }
        for h in policy.headlines
    }


def comparison_kpis(
    engine: Engine, policy: Policy, window: timedelta, now: datetime
) -> ComparisonKpis:
    """The figures of [now - window, now) that a later window is compared with: headline
    latencies, the auto-resolved share and replays. (Not the backlog, SLOs or money at
    risk: they describe the present, not a window.)"""
    with engine.connect() as conn:
        current = RollupWindow(conn, now - window, now)
        return {
            "latency": _headlines(policy, current),
            "auto_resolved_pct": _auto_resolved_pct(_closed(_counters(conn, now - window, now))),
            "replays": _replays(conn, now - window, now),
        }


def collect_kpis(
    engine: Engine, policy: Policy, window: timedelta, now: datetime | None = None
) -> KpiDocument:
    """Every KPI over [now - window, now), with SLOs over each objective's own period."""
    end = now or datetime.now(UTC)
    start = end - window
    with engine.connect() as conn:
        current = RollupWindow(conn, start, end)
        latency = _headlines(policy, current)
        rollup = _rollups(conn, end, {window: current})

        counters = _counters(conn, start, end)
        stalled = _stalled_counts(
            conn, end - max(p.objective.period for p in policy.processes.values())
        )
        processes: dict[str, ProcessKpis] = {}
        for name, spec in policy.processes.items():
            stages = spec.stage_names()
            hours = window.total_seconds() / 3600
            processes[name] = {
                "started": current.reached(name, stages[0]),
                "completed": current.reached(name, stages[-1]),
                "throughput_per_hour": round(current.reached(name, stages[0]) / hours, 3),
                "errors": sum(current.errors(name, stage) for stage in stages),
                "hops": [current.latency(name, a, b) for a, b in pairwise(stages)],
                "reconciliation": _reconciliation(counters, name),
                "sla": _slo(policy, name, end, window, stalled, rollup),
            }
        return {
            "window": {
                "start": start.isoformat(),
                "end": end.isoformat(),
                "seconds": int(window.total_seconds()),
            },
            "latency": latency,
            "processes": processes,
            "exceptions": _exceptions(conn, end, counters),
            "replays": _replays(conn, start, end),
            "money_at_risk": _money_at_risk(conn, policy, end),
            "records_reconciliation": records_reconciliation(conn, start, end),
        }


def slos(engine: Engine, policy: Policy, now: datetime) -> dict[str, Slo]:
    """Each process's SLO at `now`, as collect_kpis gives it (its `window` figures over the
    last hour), without the other KPIs: what the alerting watch needs every minute."""
    hour = timedelta(hours=1)
    with engine.connect() as conn:
        rollup = _rollups(conn, now, {})
        stalled = _stalled_counts(
            conn, now - max(p.objective.period for p in policy.processes.values())
        )
        return {name: _slo(policy, name, now, hour, stalled, rollup) for name in policy.processes}


def _rollups(
    conn: Connection, end: datetime, windows: dict[timedelta, RollupWindow]
) -> Callable[[timedelta], RollupWindow]:
    """The rollups of the `span` before `end`, each read once (`windows`: those read)."""

    def rollup(span: timedelta) -> RollupWindow:
        if span not in windows:
            windows[span] = RollupWindow(conn, end - span, end)
        return windows[span]

    return rollup


def _slo(
    policy: Policy,
    process: str,
    end: datetime,
    window: timedelta,
    stalled: dict[tuple[str, str, datetime], int],
    rollup: Callable[[timedelta], RollupWindow],
) -> Slo:
    """Compliance, error budget and burn rates of the process's latency objective, over its
    own period, and its compliance in the KPI `window` too.

    Events are the objective's completed stage pairs (good when within the latency, bad
    "slow" when over it) plus transactions that stalled before reaching its last stage
    (bad "stalled")."""
    objective = policy.processes[process].objective
    stages = policy.processes[process].stage_names()
    covered = set(
        stages[stages.index(objective.from_stage) + 1 : stages.index(objective.to_stage) + 1]
    )
    limit_ms = objective.latency.total_seconds() * 1000
    budget = 1 - objective.target

    def events(span: timedelta) -> tuple[int, BadEvents, int]:
        """Good events, bad ones by cause, and all of them, over the `span` before `end`."""
        good, completed = rollup(span).good_and_total(
            process, objective.from_stage, objective.to_stage, limit_ms
        )
        stalls = sum(
            n
            for (p, stage, at), n in stalled.items()
            if p == process and stage in covered and at >= end - span
        )
        return good, {"slow": completed - good, "stalled": stalls}, completed + stalls

    def bad_ratio(span: timedelta) -> float | None:
        good, _, total = events(span)
        return (total - good) / total if total else None

    good, bad, total = events(objective.period)
    ratio = (total - good) / total if total else None
    window_good, window_bad, window_total = events(window)
    burn: dict[str, float | None] = {}
    alerts: list[BurnAlert] = []
    for long_name, long_span, short_name, short_span, factor, severity in BURN_ALERTS:
        for name, span in ((long_name, long_span), (short_name, short_span)):
            if name not in burn:
                window_ratio = bad_ratio(span)
                burn[name] = None if window_ratio is None else round(window_ratio / budget, 3)
        firing = all((burn[n] or 0) > factor for n in (long_name, short_name))
        alerts.append(
            {
                "long": long_name,
                "short": short_name,
                "factor": factor,
                "severity": severity,
                "firing": firing,
            }
        )
    return {
        "objective": {
            "from": objective.from_stage,
            "to": objective.to_stage,
            "latency_ms": limit_ms,
            "target": objective.target,
            "period_days": objective.period.total_seconds() / _DAY,
        },
        "good": good,
        "total": total,
        "compliance": None if ratio is None else round(1 - ratio, 5),
        "bad": bad,
        "window": {
            "seconds": int(window.total_seconds()),
            "good": window_good,
            "total": window_total,
            "compliance": round(window_good / window_total, 5) if window_total else None,
            "bad": window_bad,
        },
        "error_budget_remaining": None if ratio is None else round(1 - ratio / budget, 5),
        "burn_rates": burn,
        "alerts": alerts,
        "alert_state": next(
            (
                level
                for level in ("page", "ticket")
                if any(a["firing"] and a["severity"] == level for a in alerts)
            ),
            "ok",
        ),
    }


def _stalled_counts(conn: Connection, since: datetime) -> dict[tuple[str, str, datetime], int]:
    """Stalled transactions per (process, stage waited for, 5-minute bucket)."""
    rows = conn.execute(
        text(
            "SELECT process, stage, date_bin('5 minutes', first_seen, timestamptz 'epoch'), "
            "count(*) FROM exceptions WHERE kind = 'stalled' AND first_seen >= :since "
            "AND process IS NOT NULL GROUP BY 1, 2, 3"
        ),
        {"since": since},
    )
    return {(process, stage, at): n for process, stage, at, n in rows}


def _counters(conn: Connection, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    """kpi_counts summed over the window: (counter name, process) → value."""
    rows = conn.execute(
        text(
            f"SELECT name, process, sum(value)::bigint FROM kpi_counts WHERE {_WINDOW} "
            "GROUP BY 1, 2"
        ),
        window_bounds(start, end),
    )
    return {(name, process): value for name, process, value in rows}


def _reconciliation(counters: dict[tuple[str, str], int], process: str) -> Reconciliation:
    checked = counters.get(("reconciliation_checked", process), 0)
    matched = checked - counters.get(("reconciliation_mismatched", process), 0)
    accuracy = round(matched / checked, 5) if checked else None
    return {"checked": checked, "matched": matched, "accuracy": accuracy}


def _exceptions(
    conn: Connection, end: datetime, counters: dict[tuple[str, str], int]
) -> ExceptionKpis:
    """Open exceptions as they stand now; closed ones as counted in the window."""
    open_rows = conn.execute(
        text(
            "SELECT status, impact, width_bucket(extract(epoch FROM :end - first_seen)::float8, "
            "CAST(:edges AS float8[])) AS aging, coalesce(due_at < :end, false) AS overdue, "
            "count(*) FROM exceptions WHERE status IN :open GROUP BY 1, 2, 3, 4"
        ).bindparams(bindparam("open", OPEN_STATUSES, expanding=True)),
        {"end": end, "edges": list(AGE_EDGES)},
    ).all()
    by_status: dict[ExceptionStatus, int] = dict.fromkeys(OPEN_STATUSES + CLOSED_STATUSES, 0)
    by_impact = dict.fromkeys(IMPACTS, 0)
    by_aging = dict.fromkeys(AGING_BUCKETS, 0)
    overdue = 0
    for status, impact, aging, is_overdue, n in open_rows:
        by_status[status] += n
        by_impact[impact] += n
        by_aging[AGING_BUCKETS[aging]] += n
        overdue += n if is_overdue else 0
    closed = _closed(counters)
    by_status.update(closed)
    return {
        "open": sum(by_impact.values()),
        "by_status": by_status,
        "open_by_impact": by_impact,
        "open_by_aging": by_aging,
        "overdue": overdue,
        "auto_resolved_pct": _auto_resolved_pct(closed),
    }


def _closed(counters: dict[tuple[str, str], int]) -> dict[ExceptionStatus, int]:
    """Exceptions closed in the window, by how they were closed."""
    closed: dict[ExceptionStatus, int] = dict.fromkeys(CLOSED_STATUSES, 0)
    for (name, _process), value in counters.items():
        for status in CLOSED_STATUSES:
            if name == f"exceptions_{status}":
                closed[status] += value
    return closed


def _auto_resolved_pct(closed: dict[ExceptionStatus, int]) -> float | None:
    """The share of the resolved exceptions that resolved themselves, in percent."""
    resolved = closed["resolved"] + closed["auto_resolved"]
    return round(100 * closed["auto_resolved"] / resolved, 2) if resolved else None


def _replays(conn: Connection, start: datetime, end: datetime) -> ReplayKpis:
    row = conn.execute(
        text(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded'), "
            "count(*) FILTER (WHERE status = 'failed') FROM replays "
            "WHERE requested_at >= :start AND requested_at < :end"
        ),
        {"start": start, "end": end},
    ).one()
    requested, succeeded, failed = row
    finished = succeeded + failed
    return {
        "requested": requested,
        "succeeded": succeeded,
        "failed": failed,
        "success_rate": round(succeeded / finished, 5) if finished else None,
    }


# Per reconciliation and pair of sources ('' and '' for the run as a whole): the latest
# succeeded run's figures (ever, not only in the window) and the window's, summed.
_RECORDS_RECONCILIATION = text(
    """
WITH latest AS (
    SELECT DISTINCT ON (reconciliation) id, reconciliation, started_at
    FROM reconciliation_runs
    WHERE status = 'succeeded' AND started_at < :end
    ORDER BY reconciliation, started_at DESC, id DESC
), windowed AS (
    SELECT * FROM reconciliation_runs
    WHERE started_at >= :start AND started_at < :end AND status <> 'running'
), figures AS (
    SELECT r.id, r.reconciliation, '' AS source_a, '' AS source_b, r.checked, r.matched
    FROM reconciliation_runs r
    WHERE r.id IN (SELECT id FROM latest UNION SELECT id FROM windowed WHERE status = 'succeeded')
    UNION ALL
    SELECT a.run_id, r.reconciliation, a.source_a, a.source_b, a.checked, a.matched
    FROM reconciliation_accuracy a JOIN reconciliation_runs r ON r.id = a.run_id
    WHERE a.run_id IN (SELECT id FROM latest UNION SELECT id FROM windowed
                       WHERE status = 'succeeded')
)
SELECT f.reconciliation, f.source_a, f.source_b,
       max(l.id) AS latest_id, max(l.started_at) AS latest_at,
       sum(f.checked) FILTER (WHERE f.id = l.id) AS latest_checked,
       sum(f.matched) FILTER (WHERE f.id = l.id) AS latest_matched,
       count(*) FILTER (WHERE f.id IN (SELECT id FROM windowed)) AS runs,
       coalesce(sum(f.checked) FILTER (WHERE f.id IN (SELECT id FROM windowed)), 0)
           AS window_checked,
       coalesce(sum(f.matched) FILTER (WHERE f.id IN (SELECT id FROM windowed)), 0)
           AS window_matched,
       (SELECT count(*) FROM windowed w
        WHERE w.reconciliation = f.reconciliation AND w.status = 'failed') AS failed
FROM figures f
LEFT JOIN latest l ON l.reconciliation = f.reconciliation
GROUP BY f.reconciliation, f.source_a, f.source_b
ORDER BY f.reconciliation, f.source_a, f.source_b
"""
)
_FAILED_ONLY = text(
    "SELECT reconciliation, count(*) FROM reconciliation_runs "
    "WHERE started_at >= :start AND started_at < :end AND status = 'failed' "
    "GROUP BY reconciliation ORDER BY reconciliation"
)


def records_reconciliation(
    conn: Connection, start: datetime, end: datetime
) -> dict[str, RecordsReconciliation]:
    """The accuracy of each reconciliation of the records (reconcile.yaml), as a whole and
    per source pair: its latest succeeded run and the runs of [start, end)."""
    found: dict[str, RecordsReconciliation] = {}
    for row in conn.execute(_RECORDS_RECONCILIATION, {"start": start, "end": end}):
        entry = found.setdefault(
            row.reconciliation,
            {
                "latest": None,
                "window": {"runs": 0, "failed": row.failed, **_accuracy(0, 0)},
                "pairs": [],
            },
        )
        latest = (
            _accuracy(row.latest_checked, row.latest_matched)
            if row.latest_checked is not None
            else None
        )
        window = _accuracy(row.window_checked, row.window_matched)
        if row.source_a:
            pair: PairAccuracy = {
                "sources": [row.source_a, row.source_b],
                "latest": latest,
                "window": window,
            }
            entry["pairs"].append(pair)
            continue
        entry["window"] = {"runs": row.runs, "failed": row.failed, **window}
        if latest is not None:
            entry["latest"] = {
                "run_id": row.latest_id,
                "started_at": row.latest_at.isoformat(),
                **latest,
            }
    for name, failed in conn.execute(_FAILED_ONLY, {"start": start, "end": end}):
        found.setdefault(  # failed in the window, never succeeded
            name,
            {
                "latest": None,
                "window": {"runs": 0, "failed": failed, **_accuracy(0, 0)},
                "pairs": [],
            },
        )
    return dict(sorted(found.items()))


def _accuracy(checked: int, matched: int) -> Accuracy:
    checked, matched = int(checked), int(matched)  # sums arrive as numeric
    return {
        "checked": checked,
        "matched": matched,
        "accuracy": round(matched / checked, 5) if checked else None,
    }


def close_blocking_scope(policy: Policy, end: datetime) -> tuple[list[str], datetime]:
    """What blocks the month-end close: open exceptions on these ERP-bound stages
    ("process/stage") first seen since this moment (the month's start)."""
    erp_bound = [
        f"{process}/{stage.name}"
        for process, spec in policy.processes.items()
        for stage in spec.stages
        if stage.erp_bound
    ]
    return erp_bound, end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# An exception the exceptions list's "blocking the close" holds (ERP-bound, this month's).
_BLOCKING = "process || '/' || stage = ANY(:erp_bound) AND first_seen >= :month_start"


def _money_at_risk(conn: Connection, policy: Policy, end: datetime) -> MoneyAtRisk:
    """Amounts on open exceptions, each transaction counted once (at its highest impact)."""
    erp_bound, month_start = close_blocking_scope(policy, end)
    rows = conn.execute(
        text(
            f"""
            SELECT process, impact, currency, sum(amount), blocking_currency, sum(blocking)
            FROM (
                SELECT correlation_id, min(process) AS process,
                       ({_IMPACTS})[min(array_position(
                           {_IMPACTS}, impact))] AS impact,
                       min(currency) AS currency, max(amount) AS amount,
                       -- what the exceptions list's "blocking the close" shows, once
                       min(currency) FILTER (WHERE {_BLOCKING}) AS blocking_currency,
                       max(amount) FILTER (WHERE {_BLOCKING}) AS blocking
                FROM exceptions
                WHERE status IN :open AND amount IS NOT NULL
                GROUP BY correlation_id
            ) per_transaction
            GROUP BY 1, 2, 3, 5 ORDER BY 1, 2, 3, 5
            """
        ).bindparams(bindparam("open", OPEN_STATUSES, expanding=True)),
        {"erp_bound": erp_bound, "month_start": month_start},
    ).all()
    at_risk: dict[tuple[str, Impact, str], float] = defaultdict(float)
    blocking: dict[str, float] = defaultdict(float)
    for process, impact, currency, amount, blocking_currency, erp_amount in rows:
        at_risk[(process, impact, currency)] += float(amount)
        if erp_amount is not None:
            blocking[blocking_currency or ""] += float(erp_amount)
    return {
        "by_process_impact": [
            {"process": p, "impact": i, "currency": c, "amount": a}
            for (p, i, c), a in at_risk.items()
        ],
        "erp_bound_this_month": [
            {"currency": c, "amount": round(a, 2)} for c, a in sorted(blocking.items())
        ],
    }

"""The KPI document of `queries.kpis` as text tables, for `q2c kpis` without --json."""

from __future__ import annotations

from queries.kpi_document import KpiDocument


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    seconds = value / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _rate(value: float | None) -> str:
    """A burn rate; a dash for a window without events (a rate of 0 is 0)."""
    return "—" if value is None else f"{value:g}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _records_table(kpis: KpiDocument) -> str:
    """Reconciliation of the records (reconcile.yaml): a row per reconciliation, then one
    per pair of its sources."""
    rows = []
    for name, rec in kpis["records_reconciliation"].items():
        latest, windowed = rec["latest"], rec["window"]
        rows.append(
            [
                name,
                "all sources",
                _pct(latest and latest["accuracy"]),
                str(latest["checked"]) if latest else "—",
                _pct(windowed["accuracy"]),
                str(windowed["runs"]),
                str(windowed["failed"]),
            ]
        )
        for pair in rec["pairs"]:
            pl = pair["latest"]
            rows.append(
                [
                    "",
                    " / ".join(pair["sources"]),
                    _pct(pl and pl["accuracy"]),
                    str(pl["checked"]) if pl else "—",
                    _pct(pair["window"]["accuracy"]),
                    "",
                    "",
                ]
            )
    headers = ["records reconciled", "sources", "latest run", "checked", "window", "runs", "failed"]
    return _table(headers, rows)


def render(kpis: KpiDocument) -> str:
    """Headline latencies, per-process SLA and flow, exceptions, replays and money at risk."""
    window = kpis["window"]
    parts = [f"KPIs from {window['start'][:19]} to {window['end'][:19]} UTC", ""]
    parts.append(
        _table(
            ["latency", "count", "p50", "p95", "p99"],
            [
                [name, str(v["count"]), _ms(v["p50_ms"]), _ms(v["p95_ms"]), _ms(v["p99_ms"])]
                for name, v in kpis["latency"].items()
            ],
        )
    )
    parts.append("")
    rows = []
    for name, p in kpis["processes"].items():
        sla, rec = p["sla"], p["reconciliation"]
        rows.append(
            [
                name,
                str(p["started"]),
                str(p["completed"]),
                str(p["errors"]),
                _pct(sla["compliance"]),
                _pct(sla["error_budget_remaining"]),
                _rate(sla["burn_rates"].get("1h")),
                sla["alert_state"],
                _pct(rec["accuracy"]),
            ]
        )
    parts.append(
        _table(
            [
                "process",
                "started",
                "completed",
                "errors",
                "SLA",
                "budget left",
                "burn 1h",
                "alert",
                "telemetry reconciled",
            ],
            rows,
        )
    )
    if kpis["records_reconciliation"]:
        parts += ["", _records_table(kpis)]
    parts.append("")
    exc = kpis["exceptions"]
    parts.append(
        f"open exceptions: {exc['open']} (overdue {exc['overdue']}); by impact "
        + ", ".join(f"{k} {v}" for k, v in exc["open_by_impact"].items())
        + "; by age "
        + ", ".join(f"{k} {v}" for k, v in exc["open_by_aging"].items())
    )
    auto = exc["auto_resolved_pct"]
    parts.append(f"auto-resolved: {'—' if auto is None else f'{auto}%'} of resolved")
    rep = kpis["replays"]
    parts.append(
        f"replays: {rep['requested']} requested, {rep['succeeded']} succeeded, "
        f"{rep['failed']} failed, success rate {_pct(rep['success_rate'])}"
    )
    money = kpis["money_at_risk"]
    blocking = ", ".join(
        f"{m['amount']:,.2f} {m['currency']}" for m in money["erp_bound_this_month"]
    )
    parts.append(f"money at risk on ERP-bound stages this month: {blocking or 'none'}")
    return "\n".join(parts)

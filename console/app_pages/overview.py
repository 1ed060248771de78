"""Overview, for the CIO: KPI tiles against the previous period, SLOs, trends."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import plotly.express as px
import streamlit as st

from console._auth import can, page_user, recheck_sign_in
from console._links import Linked, held, seed_from_link
from console._resources import engine, load, policy
from console._widgets import (
    amount_text,
    delta_text,
    duration_delta,
    duration_text,
    moment_text,
)
from q2c.vocabulary import IMPACTS
from queries.kpis import collect_kpis, comparison_kpis
from queries.overview import telemetry_presence
from queries.trends import daily_trends

COLLECTOR_ENDPOINT = "http://127.0.0.1:4318"
WINDOWS = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
}

user = page_user("dashboards.view")
# Where each tile leads: the page behind it, and who may open that page.
PAGE_FILES = {
    "stages": ("app_pages/stages.py", "dashboards.view"),
    "exceptions": ("app_pages/exceptions.py", "exceptions.view"),
    "dead_letters": ("app_pages/dead_letters.py", "dead_letters.view"),
    "reconciliation": ("app_pages/reconciliation.py", "reconciliation.view"),
}


def link(where, page: str, label: str, **params: str | list[str]) -> None:
    """A link under a tile to the list behind it, filtered; only if the role opens it."""
    file, permission = PAGE_FILES[page]
    if can(user, permission):
        where.page_link(file, label=label, icon=":material/arrow_forward:", query_params=params)


@st.cache_data(ttl=10, show_spinner=False)
def _presence():
    return telemetry_presence(engine())


@st.cache_data(ttl=15, show_spinner=False)
def _kpis(window_seconds: int, end: datetime) -> dict:
    return collect_kpis(engine(), policy(), timedelta(seconds=window_seconds), end)


@st.cache_data(ttl=15, show_spinner=False)
def _before(window_seconds: int, end: datetime) -> dict:
    return comparison_kpis(engine(), policy(), timedelta(seconds=window_seconds), end)


@st.cache_data(ttl=60, show_spinner=False)
def _trends(days: int) -> list[dict]:
    return daily_trends(engine(), policy(), days)


# How each alert state reads in the SLO table: paging red, ticket amber, ok green.
ALERT_STYLE = {"page": "color: #b42318; font-weight: 600", "ticket": "color: #b54708"}


st.title("Quote-to-cash overview")
presence = load(_presence)
if presence.empty:
    st.info("**No data yet.** Nothing has reached the collector so far.", icon=":material/info:")
    st.markdown(
        "Point your OpenTelemetry exporters at the Q2C collector and tag spans with "
        "`q2c.correlation_id`, `q2c.process` and `q2c.stage`; dashboards fill in as "
        "transactions flow:"
    )
    st.code(
        f"export OTEL_EXPORTER_OTLP_ENDPOINT={COLLECTOR_ENDPOINT}\n"
        "export OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
        language="bash",
    )
    st.stop()

# /?window=Last+7+days: the overview of that window, to paste in a message.
WINDOW = Linked("window", "window", "Last 24 hours", list(WINDOWS))
seed_from_link([WINDOW])
choice = (
    st.segmented_control("Window", list(WINDOWS), default=held(WINDOW.key), key=WINDOW.key)
    or "Last 24 hours"  # a second click on the chosen window clears the choice
)
if choice == WINDOW.default:  # (write_link would say a cleared choice as "None")
    st.query_params.pop(WINDOW.param, None)
else:
    st.query_params[WINDOW.param] = choice
window = WINDOWS[choice]


def _share(figures: dict | None) -> str:
    return (
        "—" if not figures or figures["accuracy"] is None else f"{100 * figures['accuracy']:.1f}%"
    )


def records_tiles(reconciliations: dict) -> None:
    """Reconciliation of the records (reconcile.yaml), apart from the telemetry's: each
    reconciliation's latest run, the window's runs and each source pair."""
    if not reconciliations:
        return
    st.markdown("**Records reconciled across the systems of record** (reconcile.yaml)")
    cells = [cell for _ in range(len(reconciliations) // 4 + 1) for cell in st.columns(4)]
    for cell, (name, rec) in zip(cells, reconciliations.items(), strict=False):
        latest, windowed = rec["latest"], rec["window"]
        cell.metric(f"Records matched: {name}", _share(latest), border=True)
        # The window's figure is that of the runs that succeeded; those that failed are
        # counted apart, with when the latest figure was reached.
        runs = f"{windowed['runs']} run{'s' * (windowed['runs'] != 1)}"
        failed = windowed["failed"]
        if not failed:
            cell.caption(f"window {_share(windowed)} over {runs}")
        else:
            since = "; none succeeded yet"
            if latest:
                reached = datetime.fromisoformat(latest["started_at"])
                since = f"; the figure above is of {moment_text(reached)}"
            cell.caption(
                f"window {_share(windowed)} over {runs} that succeeded, "
                f":red[{failed} more failed]{since}"
            )
        pairs = " · ".join(
            f"{' ↔ '.join(p['sources'])} {_share(p['latest'])}" for p in rec["pairs"]
        )
        if len(rec["pairs"]) > 1:
            cell.caption(pairs)
        link(cell, "reconciliation", "runs and breaks", reconciliation=name)


@st.fragment(run_every=30)
def tiles() -> None:
    recheck_sign_in()  # it reruns on its own, every 30 s
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    current = load(_kpis, int(window.total_seconds()), end)
    previous = load(_before, int(window.total_seconds()), end - window)
    exc, rep, rep_before = current["exceptions"], current["replays"], previous["replays"]

    # The headline latencies of sla.yaml, each percentile a tile, then the auto-resolved share.
    tiles = [
        (name, headline, q)
        for name, headline in current["latency"].items()
        for q in headline["percentiles"]
    ]
    cells = [cell for _ in range(len(tiles) // 4 + 1) for cell in st.columns(4)]
    hours = str(min(int(window.total_seconds() // 3600), 720))
    for cell, (name, headline, q) in zip(cells, tiles, strict=False):
        now_ms = headline.get(f"p{q}_ms")
        before_ms = previous["latency"].get(name, {}).get(f"p{q}_ms")
        cell.metric(
            f"{headline['title']} p{q}",
            duration_text(now_ms),
            duration_delta(now_ms, before_ms),
            delta_color="inverse",
            border=True,
        )
        objective_ms = current["processes"][headline["process"]]["sla"]["objective"]["latency_ms"]
        limit = duration_text(objective_ms)
        if now_ms is not None:  # coloured by the process's latency objective
            cell.caption(
                f":red[over the {limit} objective]"
                if now_ms > objective_ms
                else f":green[within the {limit} objective]"
            )
        link(cell, "stages", "latency per hop", process=headline["process"], hours=hours)
    auto = cells[len(tiles)]
    auto.metric(
        "Auto-resolved",
        "—" if exc["auto_resolved_pct"] is None else f"{exc['auto_resolved_pct']:.0f}%",
        delta_text(exc["auto_resolved_pct"], previous["auto_resolved_pct"], " pts"),
        border=True,
    )
    link(auto, "exceptions", "auto-resolved exceptions", status="auto_resolved")
    row = st.columns(4)
    checked = sum(p["reconciliation"]["checked"] for p in current["processes"].values())
    matched = sum(p["reconciliation"]["matched"] for p in current["processes"].values())
    row[0].metric(
        "Telemetry reconciliation",
        f"{100 * matched / checked:.1f}%" if checked else "—",
        border=True,
        help="Transactions whose amounts agree as the systems reported them in telemetry.",
    )
    link(row[0], "exceptions", "open breaks", reconciled_in="telemetry")
    impact = exc["open_by_impact"]
    row[1].metric("Open exceptions", f"{exc['open']:,}", border=True)
    row[1].caption(f"overdue {exc['overdue']:,}")
    for level in IMPACTS:
        if impact[level]:
            link(row[1], "exceptions", f"{impact[level]:,} {level}", impact=level)
    lags = [
        (hop["p95_ms"], name)
        for name, p in current["processes"].items()
        for hop in p["hops"]
        if hop["p95_ms"]
    ]
    worst = max(lags, default=None)
    row[2].metric("Worst event lag (p95)", duration_text(worst and worst[0]), border=True)
    if worst:
        link(row[2], "stages", f"in {worst[1]}", process=worst[1], hours=hours)
    row[3].metric(
        "Replay success",
        "—" if rep["success_rate"] is None else f"{100 * rep['success_rate']:.0f}%",
        delta_text(
            rep["success_rate"] and 100 * rep["success_rate"],
            rep_before["success_rate"] and 100 * rep_before["success_rate"],
            " pts",
        ),
        border=True,
    )
    link(row[3], "dead_letters", "dead letters and replays")
    records_tiles(current["records_reconciliation"])

    st.subheader("SLOs")
    st.caption(
        "Events of an objective: its completed transactions (good within the latency, "
        "slow over it) and those that stalled before its last stage (bad). Compliance is "
        f"shown for the window ({choice.lower()}) and for the objective's own period, "
        "over which the error budget and burn rates are counted too."
    )
    slo = pd.DataFrame(
        [
            {
                "process": f"/stages?process={name}",
                "alert": s["alert_state"],
                "objective": f"{s['objective']['from']} → {s['objective']['to']} ≤ "
                f"{s['objective']['latency_ms'] / 60000:g} min",
                f"compliance, {choice.lower()}": s["window"]["compliance"],
                "compliance, period": s["compliance"],
                "period": f"{s['objective']['period_days']:g} d",
                "bad in period": f"{s['bad']['slow']} slow · {s['bad']['stalled']} stalled",
                "error budget left": s["error_budget_remaining"],
                "burn 1h": s["burn_rates"].get("1h"),
                "burn 6h": s["burn_rates"].get("6h"),
                "started": p["started"],
                "errors": p["errors"],
            }
            for name, p in current["processes"].items()
            for s in [p["sla"]]
        ]
    )
    percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        slo.style.map(lambda state: ALERT_STYLE.get(state, "color: #067647"), subset=["alert"]),
        hide_index=True,
        column_config={
            "process": st.column_config.LinkColumn(
                "process", display_text=r"/stages\?process=(.*)", help="its funnel and hops"
            ),
            f"compliance, {choice.lower()}": percent,
            "compliance, period": percent,
            "error budget left": percent,
            # A burn rate: how many times faster than the budget allows (1 spends it just so).
            "burn 1h": st.column_config.NumberColumn(format="%.2f"),
            "burn 6h": st.column_config.NumberColumn(format="%.2f"),
        },
    )
    money = current["money_at_risk"]["erp_bound_this_month"]
    if money:
        with st.container(border=True):
            st.markdown(
                "**Blocking the month-end close** (open exceptions on ERP-bound stages, "
                "first seen this month), per currency, each transaction counted once:"
            )
            for cell, m in zip(st.columns(max(len(money), 4)), money, strict=False):
                cell.metric(m["currency"] or "no currency", amount_text(m["amount"], None))
                scope = {"currency": m["currency"]} if m["currency"] else {}
                link(cell, "exceptions", "the exceptions", close="blocking", **scope)


tiles()

st.subheader("Trends")
trend = pd.DataFrame(load(_trends, 14))
if trend.empty:
    st.caption("Trends appear once a day of data has been evaluated.")
else:
    left, right = st.columns(2)
    left.plotly_chart(
        px.line(
            trend,
            x="day",
            y="started",
            color="process",
            markers=True,
            title="Transactions started per day",
        ),
        width="stretch",
    )
    trend["p95 (min)"] = trend["p95_ms"] / 60000
    right.plotly_chart(
        px.line(
            trend,
            x="day",
            y="p95 (min)",
            color="process",
            markers=True,
            title="Objective latency p95",
        ),
        width="stretch",
    )

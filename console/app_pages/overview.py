"""Overview, for the CIO: KPI tiles against the previous period, SLOs, trends."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import plotly.express as px
import streamlit as st

from console._auth import page_user
from console._resources import engine, load, policy
from queries.kpis import collect_kpis
from queries.overview import telemetry_presence
from queries.trends import daily_trends

COLLECTOR_ENDPOINT = "http://127.0.0.1:4318"
WINDOWS = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
}

page_user("dashboards.view")


@st.cache_data(ttl=10, show_spinner=False)
def _presence():
    return telemetry_presence(engine())


@st.cache_data(ttl=15, show_spinner=False)
def _kpis(window_seconds: int, end: datetime, with_slos: bool = True) -> dict:
    return collect_kpis(engine(), policy(), timedelta(seconds=window_seconds), end, with_slos)


@st.cache_data(ttl=60, show_spinner=False)
def _trends(days: int) -> list[dict]:
    return daily_trends(engine(), policy(), days)


def _minutes(ms: float | None) -> str:
    return "—" if ms is None else (f"{ms / 60000:.1f} min" if ms >= 60000 else f"{ms / 1000:.1f} s")


def _delta(now: float | None, before: float | None, unit: str = "") -> str | None:
    if now is None or before is None:
        return None
    return f"{now - before:+.1f}{unit}"


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

choice = st.segmented_control("Window", list(WINDOWS), default="Last 24 hours", key="window")
window = WINDOWS[choice or "Last 24 hours"]


@st.fragment(run_every=30)
def tiles() -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    current = load(_kpis, int(window.total_seconds()), end)
    previous = load(_kpis, int(window.total_seconds()), end - window, False)
    o2a, o2a_before = (
        current["latency"]["order_to_activation"],
        previous["latency"]["order_to_activation"],
    )
    inv, inv_before = (
        current["latency"]["invoice_propagation"],
        previous["latency"]["invoice_propagation"],
    )
    exc, exc_before = current["exceptions"], previous["exceptions"]
    rep, rep_before = current["replays"], previous["replays"]

    def minutes_delta(a, b):
        return _delta(a and a / 60000, b and b / 60000, " min")

    row = st.columns(4)
    row[0].metric(
        "Order → activation p50",
        _minutes(o2a["p50_ms"]),
        minutes_delta(o2a["p50_ms"], o2a_before["p50_ms"]),
        delta_color="inverse",
    )
    row[1].metric(
        "Order → activation p95",
        _minutes(o2a["p95_ms"]),
        minutes_delta(o2a["p95_ms"], o2a_before["p95_ms"]),
        delta_color="inverse",
    )
    row[2].metric(
        "Invoice propagation p95",
        _minutes(inv["p95_ms"]),
        minutes_delta(inv["p95_ms"], inv_before["p95_ms"]),
        delta_color="inverse",
    )
    row[3].metric(
        "Auto-resolved",
        "—" if exc["auto_resolved_pct"] is None else f"{exc['auto_resolved_pct']:.0f}%",
        _delta(exc["auto_resolved_pct"], exc_before["auto_resolved_pct"], " pts"),
    )
    row = st.columns(4)
    checked = sum(p["reconciliation"]["checked"] for p in current["processes"].values())
    matched = sum(p["reconciliation"]["matched"] for p in current["processes"].values())
    row[0].metric("Reconciliation accuracy", f"{100 * matched / checked:.1f}%" if checked else "—")
    impact = exc["open_by_impact"]
    row[1].metric(
        "Open exceptions",
        exc["open"],
        help=f"critical {impact['critical']} · high {impact['high']} · medium "
        f"{impact['medium']} · low {impact['low']} · overdue {exc['overdue']}",
    )
    lags = [
        hop["p95_ms"] for p in current["processes"].values() for hop in p["hops"] if hop["p95_ms"]
    ]
    row[2].metric("Worst event lag (p95)", _minutes(max(lags) if lags else None))
    row[3].metric(
        "Replay success",
        "—" if rep["success_rate"] is None else f"{100 * rep['success_rate']:.0f}%",
        _delta(
            rep["success_rate"] and 100 * rep["success_rate"],
            rep_before["success_rate"] and 100 * rep_before["success_rate"],
            " pts",
        ),
    )

    st.subheader("SLOs")
    slo = pd.DataFrame(
        [
            {
                "process": name,
                "objective": f"{s['objective']['from']} → {s['objective']['to']} ≤ "
                f"{s['objective']['latency_ms'] / 60000:g} min",
                "compliance": s["compliance"],
                "error budget left": s["error_budget_remaining"],
                "burn 1h": s["burn_rates"].get("1h"),
                "burn 6h": s["burn_rates"].get("6h"),
                "alert": s["alert_state"],
                "started": p["started"],
                "errors": p["errors"],
            }
            for name, p in current["processes"].items()
            for s in [p["sla"]]
        ]
    )
    st.dataframe(
        slo,
        hide_index=True,
        column_config={
            "compliance": st.column_config.NumberColumn(format="percent"),
            "error budget left": st.column_config.NumberColumn(format="percent"),
        },
    )
    money = current["money_at_risk"]["erp_bound_this_month"]
    if money:
        st.warning(
            "Blocking month-end close (open exceptions on ERP-bound stages this month): "
            + ", ".join(f"{m['amount']:,.2f} {m['currency']}" for m in money)
        )


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

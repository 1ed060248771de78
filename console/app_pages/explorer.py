"""Trace explorer: a transaction by correlation ID or business key, its journey across
systems as a waterfall, with its logs, exceptions and replays."""

from datetime import UTC

import pandas as pd
import plotly.express as px
import streamlit as st

from console._auth import page_user
from console._resources import engine, load
from queries.transactions import find_transactions, journey

page_user("exceptions.view")


@st.cache_data(ttl=10, show_spinner=False)
def _find(key: str) -> list[dict]:
    return find_transactions(engine(), key)


@st.cache_data(ttl=10, show_spinner=False)
def _journey(correlation_id: str) -> dict:
    return journey(engine(), correlation_id)


def _label(found: dict) -> str:
    """A transaction among several with one key: what it is, when it began, where it is."""
    started = found.get("started_at")
    return " · ".join(
        (
            found.get("process") or "no process yet",
            f"started {started.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if started else "not started",
            found.get("status") or "—",
            found["correlation_id"],
        )
    )


st.title("Trace explorer")
if "explorer_key" not in st.session_state:  # /explorer?q=KEY: that key, looked up
    st.session_state["explorer_key"] = st.query_params.get("q", "")
key = st.text_input(
    "Correlation ID, business key (order, invoice, customer, payment) or trace ID",
    key="explorer_key",
    placeholder="INV-2026-000123",
)
if key:
    st.query_params["q"] = key  # the address of this lookup, to paste in a ticket
else:
    st.query_params.pop("q", None)
if not key:
    st.caption("Enter a key to see the transaction's path across CRM, billing and ERP.")
    st.stop()
found = load(_find, key)
if not found:
    st.warning(f"No transaction has the key {key!r}.")
    st.stop()
correlation_id = found[0]["correlation_id"]
if len(found) > 1:
    labels = {f["correlation_id"]: _label(f) for f in found}
    correlation_id = st.selectbox(
        f"{len(found)} transactions have this key (newest first)",
        list(labels),
        format_func=labels.__getitem__,
        key="explorer_pick",
    )
trip = load(_journey, correlation_id)
txn = trip["transaction"]
left, right = st.columns([3, 1])
left.markdown(
    f"**{txn.get('process') or 'no process yet'}** · now at **{txn.get('current_stage') or '—'}**"
    f" · status **{txn.get('status') or '—'}**  \n"
    f"correlation `{correlation_id}` · customer {txn.get('customer_id') or '—'} · order "
    f"{txn.get('order_id') or '—'} · invoice {txn.get('invoice_id') or '—'} · payment "
    f"{txn.get('payment_id') or '—'}"
)
amount = txn.get("amount")
right.metric("Amount", "—" if amount is None else f"{amount:,.2f} {txn.get('currency') or ''}")

spans = pd.DataFrame(trip["spans"])
if spans.empty:
    st.caption("No spans stored for this transaction.")
else:
    spans["outcome"] = spans["status_code"].map({2: "error"}).fillna("ok")
    spans["label"] = spans["system"] + " · " + spans["name"]
    chart = px.timeline(
        spans,
        x_start="start_time",
        x_end="end_time",
        y="label",
        color="outcome",
        color_discrete_map={"ok": "#2e7d32", "error": "#c62828"},
        hover_data=["stage", "trace_id", "status_message"],
        title="Journey",
    )
    chart.update_yaxes(autorange="reversed", title=None)
    st.plotly_chart(chart, width="stretch")

events = [
    {
        "time": s["start_time"],
        "kind": "span",
        "system": s["system"],
        "stage": s["stage"],
        "detail": s["name"] + (f" — {s['status_message']}" if s["status_message"] else ""),
    }
    for s in trip["spans"]
]
events += [
    {
        "time": log["time"],
        "kind": f"log {log['severity_text'] or ''}".strip(),
        "system": log["service_name"],
        "stage": log["stage"],
        "detail": str(log["body"]),
    }
    for log in trip["logs"]
]
if events:
    st.markdown("**Spans and logs, interleaved**")
    st.dataframe(pd.DataFrame(events).sort_values("time"), hide_index=True)
left, right = st.columns(2)
left.markdown("**Exceptions**")
left.dataframe(pd.DataFrame(trip["exceptions"]), hide_index=True)
right.markdown("**Replays**")
right.dataframe(pd.DataFrame(trip["replays"]), hide_index=True)

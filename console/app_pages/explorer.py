"""Trace explorer: a transaction by correlation ID, business key or trace ID; its spans as
a waterfall (nested by parent, durations written, idle gaps compressed), a span's
attributes, events and logs, and what happened to it in time order, each with its link."""

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from console._auth import page_user
from console._links import Linked, held, seed_from_link, write_link
from console._resources import engine, load
from console._waterfall import ERROR, figure, layout, length_text, row_label
from console._widgets import amount_text, moment_text, plain, readable
from queries.transactions import find_transactions, journey, recent_transactions

page_user("transactions.view")
SPAN_KINDS = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}


@st.cache_data(ttl=10, show_spinner=False)
def _find(key: str) -> list[dict]:
    return find_transactions(engine(), key)


@st.cache_data(ttl=10, show_spinner=False)
def _journey(correlation_id: str) -> dict:
    return journey(engine(), correlation_id)


@st.cache_data(ttl=10, show_spinner=False)
def _recent(failing: bool) -> list[dict]:
    return recent_transactions(engine(), failing)


def _started(found: dict) -> str:
    started = found.get("started_at")
    return moment_text(started) if started else "not started"


def transactions_table(rows: list[dict]) -> None:
    """Transactions as a list, each opening in the explorer by its own address."""
    frame = pd.DataFrame(
        [
            {
                "open": f"/explorer?q={row['correlation_id']}",
                "process": row.get("process") or "no process yet",
                "started": _started(row),
                "status": row.get("status") or "—",
                "now at": row.get("current_stage") or "—",
                "invoice": row.get("invoice_id") or "—",
                "amount": amount_text(row.get("amount"), row.get("currency")),
            }
            for row in rows
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "open": st.column_config.LinkColumn(
                "transaction", display_text=r"/explorer\?q=(.*)", width="medium"
            )
        },
    )


def when_empty() -> None:
    """No key yet: the transactions that moved last, and those failing now."""
    st.caption("Enter a key, or open one of the transactions below.")
    recent, failing = st.columns(2)
    with recent:
        st.markdown("**Most recent transactions**")
        transactions_table(load(_recent, False))
    with failing:
        st.markdown("**Most recent failing transactions** (an open exception)")
        transactions_table(load(_recent, True))


def history(trip: dict) -> pd.DataFrame:
    """What happened to the transaction, in time order: stages reached, failures, dead
    letters and replays, each with the address of its page."""
    # (time, what, detail, link) of each event; a stage's is its process's funnel.
    process = trip["transaction"].get("process")
    funnel = f"/stages?process={process}" if process else "/stages"
    rows: list[tuple[Any, str, str, str]] = [
        (
            s["reached_at"],
            f"stage reached · {s['status'] or '—'}",
            f"{s['stage']} ({s['system'] or 'any system'})",
            funnel,
        )
        for s in trip["stages"]
    ]
    rows += [
        (
            e["first_seen"],
            f"exception {e['kind']} · {e['status']}",
            f"{e['stage']}: {e['message']}",
            f"/exceptions?id={e['id']}",
        )
        for e in trip["exceptions"]
    ]
    rows += [
        (
            d["occurred_at"],
            f"dead letter · {d['status']}",
            f"{d['stage'] or '—'} ({d['system'] or '—'}): {d['error_message'] or ''}",
            f"/dead_letters?id={d['id']}",
        )
        for d in trip["dead_letters"]
    ]
    for r in trip["replays"]:
        letter = f"/dead_letters?id={r['dead_letter_id']}"
        rows.append(
            (
                r["requested_at"],
                "replay requested",
                f"by {r['requested_by']} · dead letter {r['dead_letter_id']}",
                letter,
            )
        )
        if r["finished_at"] is not None:
            rows.append(
                (
                    r["finished_at"],
                    f"replay {r['status']}",
                    f"after {r['attempts']} attempt(s), HTTP {r['response_code'] or '—'}",
                    letter,
                )
            )
    frame = pd.DataFrame(rows, columns=["time", "what", "detail", "link"])
    return frame.sort_values("time", kind="stable") if not frame.empty else frame


def span_detail(span: dict, logs: list[dict], duration_s: float) -> None:
    """One span: its status, identity, attributes, events and the logs it wrote."""
    failed = span["status_code"] == ERROR
    st.markdown(
        f"**{plain(span['name'])}** · {plain(span['system'])} ({plain(span['service_name'])})"
        f" · {SPAN_KINDS.get(span['kind'], span['kind'])} · {length_text(duration_s)} · "
        + (
            f":red[error: {plain(span['status_message'] or 'no message')}]"
            if failed
            else ":green[ok]"
        )
    )
    st.caption(
        f"started {moment_text(span['start_time'], seconds=True)} · trace `{span['trace_id']}` "
        f"· span `{span['span_id']}` · parent `{span['parent_span_id'] or '—'}`"
    )
    attributes, events, written = st.tabs(["Attributes", "Events", "Logs"])
    attributes.json(span["attributes"] or {}, expanded=True)
    event_rows = [
        {
            "time": moment_text(
                datetime.fromtimestamp(int(e.get("time_unix_nano") or 0) / 1e9, UTC), True
            ),
            "name": e.get("name"),
            "attributes": e.get("attributes") or {},
        }
        for e in span["events"] or []
    ]
    if event_rows:
        events.dataframe(readable(event_rows), hide_index=True)
    else:
        events.caption("This span recorded no events.")
    mine = [log for log in logs if log["span_id"] == span["span_id"]]
    if mine:
        written.dataframe(
            readable(mine)[["time", "severity_text", "body", "source"]], hide_index=True
        )
    else:
        written.caption("No log record names this span.")


st.title("Trace explorer")
LOOKUP = [Linked("explorer_key", "q")]  # /explorer?q=KEY: that key, looked up
seed_from_link(LOOKUP)
key = st.text_input(
    "Correlation ID, business key (order, invoice, customer, payment) or trace ID",
    held("explorer_key"),
    key="explorer_key",
    placeholder="INV-2026-000123",
)
write_link(LOOKUP)  # the address of this lookup, to paste in a ticket
if not key:
    st.query_params.pop("span", None)
    when_empty()
    st.stop()
found = load(_find, key)
if not found:
    st.warning(f"No transaction has the key {plain(repr(key))}.")
    st.stop()
correlation_id = found[0]["correlation_id"]
if len(found) > 1:
    st.markdown(f"**{len(found)} transactions have this key** (newest first)")
    transactions_table(found)
    labels = {
        f["correlation_id"]: " · ".join(
            (f.get("process") or "no process yet", _started(f), f.get("status") or "—")
        )
        + f" · {f['correlation_id']}"
        for f in found
    }
    correlation_id = st.selectbox(
        "Show", list(labels), format_func=labels.__getitem__, key="explorer_pick"
    )
trip = load(_journey, correlation_id)
txn = trip["transaction"]
left, right = st.columns([3, 1])
left.markdown(
    f"**{plain(txn.get('process') or 'no process yet')}** · now at "
    f"**{plain(txn.get('current_stage') or '—')}** · status **{plain(txn.get('status') or '—')}**"
    f"  \ncorrelation {plain(correlation_id)} · customer {plain(txn.get('customer_id') or '—')}"
    f" · order {plain(txn.get('order_id') or '—')} · invoice {plain(txn.get('invoice_id') or '—')}"
    f" · payment {plain(txn.get('payment_id') or '—')}"
)
right.metric("Amount", amount_text(txn.get("amount"), txn.get("currency")))

waterfall = layout(trip["spans"])
if not waterfall.bars:
    st.caption("No spans stored for this transaction.")
else:
    st.markdown(
        f"**Waterfall** · {len(waterfall.bars)} span(s)"
        + (f" · {len(waterfall.gaps)} idle gap(s) compressed" if waterfall.gaps else "")
        + " · click a bar for its detail"
    )
    shown, click = f"span_index:{correlation_id}", f"waterfall_click:{correlation_id}"
    clicked = st.plotly_chart(
        figure(waterfall),
        on_select="rerun",
        selection_mode="points",
        key=f"waterfall:{correlation_id}",
    )
    labels = [f"{i + 1}. {row_label(bar).strip()}" for i, bar in enumerate(waterfall.bars)]
    span_ids = [bar.span["span_id"] for bar in waterfall.bars]
    # The span shown: a click on its bar, else the one the address names, else the first
    # failed one, else the first.
    points = clicked.selection.points if clicked else []
    chosen_click = points[0].get("point_index") if points else None
    if chosen_click is not None and chosen_click != st.session_state.get(click):
        st.session_state[click] = chosen_click
        st.session_state[shown] = chosen_click
    if shown not in st.session_state or st.session_state[shown] >= len(labels):
        linked = st.query_params.get("span")
        failed = [i for i, bar in enumerate(waterfall.bars) if bar.span["status_code"] == ERROR]
        st.session_state[shown] = (
            span_ids.index(linked) if linked in span_ids else (failed or [0])[0]
        )
    index = st.selectbox("Span", range(len(labels)), format_func=labels.__getitem__, key=shown)
    st.query_params["span"] = span_ids[index]
    bar = waterfall.bars[index]
    with st.container(border=True):
        span_detail(dict(bar.span), trip["logs"], bar.duration_s)

st.markdown("**What happened, in time order** (failures, dead letters, replays, stages)")
st.dataframe(
    readable(history(trip)),
    hide_index=True,
    column_config={"link": st.column_config.LinkColumn("open", display_text="open")},
)
if trip["logs"]:
    with st.expander(f"All {len(trip['logs'])} log record(s)"):
        st.dataframe(
            readable(trip["logs"])[["time", "severity_text", "service_name", "stage", "body"]],
            hide_index=True,
        )

"""Quote-to-cash stages: per process funnel, latency per hop, throughput, stalled ones."""

import itertools
from datetime import UTC, datetime, timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from console._auth import page_user
from console._links import Linked, held_index, seed_from_link, write_link
from console._resources import engine, load, policy
from console._widgets import readable
from queries.kpis import rollup_window
from queries.transactions import stalled_transactions
from sla import histogram

page_user("dashboards.view")


@st.cache_data(ttl=15, show_spinner=False)
def _window(hours: int) -> tuple[dict, dict]:
    end = datetime.now(UTC)
    rollup = rollup_window(engine(), end - timedelta(hours=hours), end)
    return rollup.counts, dict(rollup.histograms)


@st.cache_data(ttl=15, show_spinner=False)
def _stalled() -> list[dict]:
    return stalled_transactions(engine())


st.title("Quote-to-cash stages")
processes = list(policy().processes)
WINDOW_HOURS = ["1", "24", "168", "720"]
PROCESS = Linked("process", "process", processes[0], processes)
HOURS = Linked("hours", "hours", "24", WINDOW_HOURS)
LINKED = [PROCESS, HOURS]  # /stages?process=invoice_posting&hours=168: that funnel, that window
seed_from_link(LINKED)
left, right = st.columns([2, 1])
process = left.selectbox("Process", processes, held_index(PROCESS), key=PROCESS.key)
hours = int(
    right.selectbox(
        "Window",
        WINDOW_HOURS,
        held_index(HOURS),
        key=HOURS.key,
        format_func=lambda h: f"last {h} h" if int(h) < 48 else f"last {int(h) // 24} days",
    )
)
write_link(LINKED)
counts, histograms = load(_window, hours)
stages = policy().processes[process].stage_names()

reached = [counts.get((process, "", stage), (0, 0))[0] for stage in stages]
errors = [counts.get((process, "", stage), (0, 0))[1] for stage in stages]
# Percentages to a tenth, as the table below gives them: 479 of 480 is 99.8 %, not "100%".
funnel = go.Figure(
    go.Funnel(y=list(stages), x=reached, texttemplate="%{value:,} (%{percentInitial:.1%})")
)
funnel.update_layout(title="Transactions reaching each stage", margin={"l": 10, "r": 10})
st.plotly_chart(funnel, width="stretch")

rows = []
for i, stage in enumerate(stages):
    previous = reached[i - 1] if i else None
    rows.append(
        {
            "stage": stage,
            "reached": reached[i],
            "failures": errors[i],
            "conversion": f"{reached[i] / previous:.1%}" if previous else "—",
            "drop-off": f"{previous - reached[i]:,}" if previous is not None else "—",
        }
    )
st.dataframe(pd.DataFrame(rows), hide_index=True)
st.caption(
    "Each stage counts the transactions that reached it within the window. One that reached "
    "a stage before the window began counts only at the later stages, so a conversion can "
    "pass 100 % (and a drop-off be negative) when the window cuts through transactions."
)


hops = []
for a, b in itertools.pairwise(stages):
    hist = histograms.get((process, a, b), {})
    hops.append(
        {
            "hop": f"{a} → {b}",
            "count": sum(hist.values()),
            **{f"p{q}": (histogram.percentile(hist, q) or 0) / 60000 for q in (50, 95, 99)},
        }
    )
hop_frame = pd.DataFrame(hops)
latency = go.Figure(
    [go.Bar(name=f"p{q}", x=hop_frame["hop"], y=hop_frame[f"p{q}"]) for q in (50, 95, 99)]
)
latency.update_layout(title="Latency per hop (minutes)", barmode="group")
st.plotly_chart(latency, width="stretch")
st.metric("Throughput", f"{reached[0] / hours:.1f} transactions / hour")

st.subheader("Stalled transactions")
stalled = [row for row in load(_stalled) if row["process"] == process]
if stalled:
    st.dataframe(
        readable(stalled)[
            [
                "correlation_id",
                "current_stage",
                "waiting_for",
                "stalled_since",
                "amount",
                "currency",
                "customer_id",
                "message",
            ]
        ],
        hide_index=True,
    )
else:
    st.caption("No transaction of this process is stalled.")

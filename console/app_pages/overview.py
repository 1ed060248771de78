"""Overview: the CIO's first page; until telemetry arrives it explains how to send some."""

import streamlit as st

from console._resources import engine, load
from queries.overview import telemetry_presence

COLLECTOR_ENDPOINT = "http://127.0.0.1:4318"


@st.cache_data(ttl=10, show_spinner=False)
def _presence():
    return telemetry_presence(engine())


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
else:
    left, middle, right = st.columns(3)
    left.metric("Transactions seen", f"{presence.transactions:,}")
    middle.metric("Spans received", "yes" if presence.has_spans else "none yet")
    right.metric(
        "Last stage event",
        presence.last_ingested_at.strftime("%Y-%m-%d %H:%M UTC")
        if presence.last_ingested_at
        else "none yet",
    )

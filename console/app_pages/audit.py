"""Audit log, for admins: every action by every actor (people, tokens, the product itself),
newest first; filter by actor, action, object and time; the whole match as CSV."""

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import IO

import pandas as pd
import streamlit as st

from console._auth import page_user, sign_in_guard
from console._resources import engine, load
from queries.audit import AUDIT_OBJECTS
from queries.audit_trail import AuditFilter, audit_actions, count_audit, export_audit, list_audit

user = page_user("audit.view")
PAGE_ROWS = 200
ANY = "(any)"


def _object_label(kind: str) -> str:
    return kind.replace("_", " ")


@st.cache_data(ttl=5, show_spinner=False)
def _rows(actor: str, filters: AuditFilter, page: int) -> pd.DataFrame:
    rows = list_audit(engine(), actor, filters, PAGE_ROWS, (page - 1) * PAGE_ROWS)
    return pd.DataFrame(
        rows, columns=["at", "actor", "action", "object_type", "object_id", "client", "detail"]
    ).fillna({"object_type": "", "object_id": "", "client": ""})  # blank, not "None"


def _export(actor: str, filters: AuditFilter) -> Callable[[], IO[str]]:
    """The CSV of every matching action, made when the button is clicked (on its own
    thread, so it checks the sign-in itself)."""
    still_signed_in = sign_in_guard()

    def make() -> IO[str]:
        still_signed_in()
        out = tempfile.TemporaryFile("w+", newline="")  # noqa: SIM115 (Streamlit reads it)
        export_audit(engine(), actor, filters, out)
        out.seek(0)
        return out

    return make


st.title("Audit log")
a, b, c, d = st.columns(4)
actor = a.text_input("Actor (user name)", key="a_actor").strip()
actions = load(audit_actions, engine(), user.username)
action = b.selectbox("Action", [ANY, *actions], key="a_action")
object_type = c.selectbox(
    "Object", [ANY, "exception", *AUDIT_OBJECTS], key="a_object_type", format_func=_object_label
)
object_id = d.text_input("Object ID (number or user name)", key="a_object_id").strip()
today = datetime.now(UTC).date()
days = st.date_input(
    "Between (UTC)", (today - timedelta(days=7), today), max_value=today, key="a_days"
)
first, last = (days[0], days[-1]) if isinstance(days, tuple) and days else (None, None)
filters = AuditFilter(
    actor=actor or None,
    action=None if action == ANY else action,
    object_type=None if object_type == ANY else object_type,
    object_id=object_id or None,
    since=None if first is None else datetime.combine(first, time(), UTC),
    until=None if last is None else datetime.combine(last + timedelta(days=1), time(), UTC),
)
matching = load(count_audit, engine(), user.username, filters)
if not matching:
    st.info("No action matches these filters.")
    st.stop()
pages = -(-matching // PAGE_ROWS)
page = int(st.number_input(f"Page (of {pages:,})", 1, pages, 1, key="a_page")) if pages > 1 else 1
frame = load(_rows, user.username, filters, page)
start = (page - 1) * PAGE_ROWS + 1
st.caption(f"Showing {start:,} to {start + len(frame) - 1:,} of {matching:,} matching actions")
st.dataframe(
    frame,
    hide_index=True,
    column_config={
        "at": st.column_config.DatetimeColumn("at (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "detail": st.column_config.JsonColumn("detail"),
    },
)
st.download_button(
    f"Export CSV (all {matching:,})",
    _export(user.username, filters),
    "audit-log.csv",
    "text/csv",
    key="a_export",
)

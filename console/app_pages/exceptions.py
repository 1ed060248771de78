"""Exceptions, for finance operations: filter, group, select many and act, detail, export."""

from datetime import timedelta

import pandas as pd
import streamlit as st

from console._auth import page_user
from console._resources import act, engine, load, policy, show_flash
from console._widgets import selectable_table
from queries.exceptions import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    ExceptionFilter,
    assign,
    close_exceptions,
    comment,
    exception_detail,
    group_exceptions,
    list_exceptions,
)

user = page_user("exceptions.view")
AGES = {
    "any age": None,
    "older than 1 h": timedelta(hours=1),
    "older than 4 h": timedelta(hours=4),
    "older than 24 h": timedelta(hours=24),
    "older than 3 days": timedelta(days=3),
}
COLUMNS = [
    "id",
    "impact",
    "status",
    "owner",
    "process",
    "stage",
    "system",
    "kind",
    "correlation_id",
    "customer_id",
    "invoice_id",
    "amount",
    "currency",
    "age_hours",
    "overdue",
    "occurrences",
    "message",
]


@st.cache_data(ttl=5, show_spinner=False)
def _list(filters: ExceptionFilter) -> pd.DataFrame:
    frame = pd.DataFrame(list_exceptions(engine(), filters))
    if not frame.empty:
        frame["age_hours"] = frame["age"].dt.total_seconds() / 3600
    return frame


@st.cache_data(ttl=5, show_spinner=False)
def _groups(filters: ExceptionFilter) -> pd.DataFrame:
    return pd.DataFrame(group_exceptions(engine(), filters))


@st.cache_data(ttl=30, show_spinner=False)
def _owners() -> list[str]:
    from sqlalchemy import text

    with engine().connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT username FROM users WHERE role <> 'viewer' AND NOT disabled ORDER BY 1"
                )
            )
        ]


def _run(action: str, ids: list[int], value: str) -> None:
    """on_click of the confirmation dialog: the command, then a message for the next run."""
    if action == "assign":
        result = act(assign, engine(), user.username, ids, value)
    else:
        result = act(close_exceptions, engine(), user.username, ids, action, value)
    if result is not None:
        skipped = "; ".join(f"{i}: {why}" for i, why in result.skipped.items())
        st.session_state["flash"] = (
            "ok",
            f"{action}: {len(result.changed)} exception(s)"
            + (f" (skipped {skipped})" if skipped else ""),
        )
    st.cache_data.clear()


@st.dialog("Confirm")
def confirm(action: str, ids: list[int], value: str) -> None:
    st.write(f"**{action.capitalize()}** {len(ids)} exception(s): {', '.join(map(str, ids))}")
    st.caption(f"owner: {value}" if action == "assign" else f"reason: {value}")
    # The callback acts; the rerun closes the dialog (a dialog reruns alone otherwise).
    if st.button("Confirm", type="primary", key="confirm_action", on_click=_run,
                 args=(action, ids, value)):  # fmt: skip
        st.rerun()


st.title("Exceptions")
show_flash()
processes = list(policy().processes)
with st.expander("Filters", expanded=True):
    a, b, c, d = st.columns(4)
    statuses = a.multiselect(
        "Status", OPEN_STATUSES + CLOSED_STATUSES, default=list(OPEN_STATUSES), key="f_status"
    )
    process = b.selectbox("Process", ["(any)", *processes], key="f_process")
    stage_choices = policy().processes[process].stage_names() if process != "(any)" else ()
    stage = c.selectbox("Stage", ["(any)", *stage_choices], key="f_stage")
    impact = d.multiselect("Impact", ["critical", "high", "medium", "low"], key="f_impact")
    a, b, c, d = st.columns(4)
    system = a.text_input("System", key="f_system")
    owner = b.selectbox("Owner", ["(any)", *load(_owners)], key="f_owner")
    age = c.selectbox("Age", list(AGES), key="f_age")
    search = d.text_input("Text (message, IDs)", key="f_search")
filters = ExceptionFilter(
    statuses=tuple(statuses),
    process=None if process == "(any)" else process,
    stage=None if stage == "(any)" else stage,
    system=system or None,
    impact=tuple(impact),
    owner=None if owner == "(any)" else owner,
    older_than=AGES[age],
    search=search or None,
)

if st.toggle("Group alike failures (by fingerprint)", key="grouped"):
    st.dataframe(load(_groups, filters), hide_index=True)

frame = load(_list, filters)
if frame.empty:
    st.info("No exceptions match these filters.")
    st.stop()
selected = selectable_table(
    frame,
    COLUMNS,
    "exceptions_editor",
    {"age_hours": st.column_config.NumberColumn("age (h)", format="%.1f")},
)
st.download_button("Export CSV", frame[COLUMNS].to_csv(index=False), "exceptions.csv", "text/csv")

st.subheader(f"Act on {len(selected)} selected")
a, b, c = st.columns([2, 3, 3])
new_owner = a.selectbox("Assign to", load(_owners), key="assign_to")
if a.button("Assign", disabled=not selected, key="assign"):
    confirm("assign", selected, new_owner)
reason = b.text_input("Reason (to resolve or ignore)", key="reason")
r1, r2 = c.columns(2)
if r1.button("Resolve", disabled=not (selected and reason.strip()), key="resolve"):
    confirm("resolved", selected, reason)
if r2.button("Ignore", disabled=not (selected and reason.strip()), key="ignore"):
    confirm("ignored", selected, reason)

st.subheader("Detail")
chosen = st.selectbox(
    "Exception",
    frame["id"].tolist(),
    key="detail_id",
    format_func=lambda i: f"{i} · {frame.loc[frame['id'] == i, 'message'].iloc[0]}",
)
detail = load(exception_detail, engine(), int(chosen))
m = st.columns(5)
m[0].metric("Customer", detail["customer_id"] or "—")
m[1].metric("Invoice", detail["invoice_id"] or "—")
m[2].metric(
    "Amount",
    "—" if detail["amount"] is None else f"{detail['amount']:,.2f} {detail['currency'] or ''}",
)
m[3].metric("Legal entity", detail["legal_entity"] or "—")
m[4].metric(
    "Age",
    f"{detail['age'].total_seconds() / 3600:.1f} h",
    "overdue" if detail["overdue"] else None,
    delta_color="inverse",
)
st.caption(
    f"{detail['kind']} at {detail['stage']} ({detail['system'] or 'any system'}) · "
    f"{detail['error_type']}: {detail['message']} · due {detail['due_at']}"
)
st.markdown("**Failures** (each occurrence, with the trace that reported it)")
st.dataframe(pd.DataFrame(detail["occurrences"]), hide_index=True)
left, right = st.columns(2)
left.markdown("**Transaction timeline**")
left.dataframe(pd.DataFrame(detail["timeline"]), hide_index=True)
right.markdown("**History**")
right.dataframe(pd.DataFrame(detail["history"]), hide_index=True)
note = st.text_area("Comment", key="comment_text")
if st.button("Add comment", disabled=not note.strip(), key="add_comment"):
    if act(comment, engine(), user.username, int(chosen), note) is not None:
        st.session_state["flash"] = ("ok", "comment added")
    st.cache_data.clear()
    st.rerun()

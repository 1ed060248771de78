"""Exceptions, for finance operations: filter, group, select many and act, detail, export."""

import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import IO

import pandas as pd
import streamlit as st

from console._auth import act, page_user, sign_in_guard
from console._links import (
    Linked,
    address,
    held,
    held_index,
    linked_id,
    query_string,
    seed_from_link,
    write_link,
)
from console._resources import engine, load, policy, show_flash
from console._widgets import (
    age_text,
    amount_text,
    history_event,
    moment_text,
    money_text,
    plain,
    readable,
    selectable_table,
    untick,
)
from q2c.vocabulary import CLOSED_STATUSES, EXCEPTION_KINDS, IMPACTS, OPEN_STATUSES
from queries.exceptions import (
    ORDERS,
    ActionResult,
    ExceptionFilter,
    amounts_at_stake,
    assign,
    close_exceptions,
    comment,
    count_exceptions,
    exception_detail,
    export_exceptions,
    group_exceptions,
    list_exceptions,
    matching_ids,
    record_breaks,
    reopen,
    start_work,
    still_matching,
    unassign,
)
from queries.kpis import close_blocking_scope
from queries.saved_views import delete_view, list_views, save_view
from queries.users import assignable_users

user = page_user("exceptions.view")
AGES = {
    "any age": None,
    "older than 1 h": timedelta(hours=1),
    "older than 4 h": timedelta(hours=4),
    "older than 24 h": timedelta(hours=24),
    "older than 3 days": timedelta(days=3),
}
# What triage reads first, without scrolling sideways: what failed, how much it weighs, how
# long it has waited; then who has it and where it sits.
COLUMNS = [
    "id",
    "link",
    "impact",
    "message",
    "money",
    "age_hours",
    "status",
    "owner",
    "overdue",
    "regressed",
    "kind",
    "process",
    "stage",
    "system",
    "occurrences",
    "correlation_id",
    "customer_id",
    "invoice_id",
]
# The export: the columns as stored (times in UTC), for a spreadsheet.
EXPORT_COLUMNS = [
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
    "order_id",
    "invoice_id",
    "amount",
    "currency",
    "legal_entity",
    "first_seen",
    "last_seen",
    "due_at",
    "overdue",
    "occurrences",
    "error_type",
    "message",
    "regressed_from",
    "ignored_until",
    "ignored_until_recurs",
]
EDITOR = "exceptions_editor"
PAGE_ROWS = 500  # exceptions shown at a time; the count and the export cover them all


@st.cache_data(ttl=5, show_spinner=False)
def _list(filters: ExceptionFilter, page: int, order: str) -> pd.DataFrame:
    offset = (page - 1) * PAGE_ROWS
    frame = pd.DataFrame(list_exceptions(engine(), filters, PAGE_ROWS, offset, order))
    if not frame.empty:
        frame["age_hours"] = frame["age"].dt.total_seconds() / 3600
        frame["owner"] = frame["owner"].fillna("")  # nobody's: a blank cell, not "None"
        frame["overdue"] = frame["overdue"].eq(True)  # no due time yet: not overdue
    return frame


@st.cache_data(ttl=5, show_spinner=False)
def _count(filters: ExceptionFilter) -> int:
    return count_exceptions(engine(), filters)


@st.cache_data(ttl=5, show_spinner=False)
def _at_stake(filters: ExceptionFilter) -> list[tuple[str, float, int]]:
    return amounts_at_stake(engine(), filters)


def _export(filters: ExceptionFilter, order: str) -> Callable[[], IO[str]]:
    """The CSV of every matching exception, made when the button is clicked (on its own
    thread, so it checks the sign-in itself) and spooled to a temporary file rather than
    held in memory."""
    still_signed_in = sign_in_guard()

    def make() -> IO[str]:
        still_signed_in()
        # Left open: Streamlit reads the file it is handed, then drops it.
        out = tempfile.TemporaryFile("w+", newline="")  # noqa: SIM115
        export_exceptions(engine(), user.username, filters, EXPORT_COLUMNS, out, order)
        out.seek(0)
        return out

    return make


@st.cache_data(ttl=5, show_spinner=False)
def _groups(filters: ExceptionFilter) -> pd.DataFrame:
    frame = pd.DataFrame(group_exceptions(engine(), filters))
    if not frame.empty:  # money per currency, never one sum across currencies
        frame["amounts"] = frame["amounts"].map(money_text)
    return frame


@st.cache_data(ttl=30, show_spinner=False)
def _owners(username: str) -> list[str]:
    return assignable_users(engine(), username)


# How long an ignore lasts: the choices of "Ignore", and the command's terms for each.
IGNORE_FOR = ("for good", "until a date", "until it recurs")


def _ignore_terms() -> tuple[dict, str]:
    """The ignore chosen on the page: the command's keyword arguments, and in words."""
    chosen = st.session_state.get("ignore_for", IGNORE_FOR[0])
    if chosen == "until a date":
        day = st.session_state.get("ignore_until") or date.today() + timedelta(days=7)
        return {"until": datetime.combine(day, time.min, tzinfo=UTC)}, f"until {day} 00:00 UTC"
    if chosen == "until it recurs":
        return {"until_recurs": True}, "until its failure recurs"
    return {}, "for good"


def _ignore(ids: list[int], why: str) -> ActionResult:
    terms, _ = _ignore_terms()
    return close_exceptions(engine(), user.username, ids, "ignored", why, **terms)


# What each action does, and how its confirmation proposes it (nothing has happened yet).
COMMANDS: dict[str, tuple[str, Callable[[list[int], str], ActionResult]]] = {
    "assign": ("Assign", lambda ids, owner: assign(engine(), user.username, ids, owner)),
    "unassign": ("Unassign", lambda ids, _: unassign(engine(), user.username, ids)),
    "start work": ("Start work on", lambda ids, _: start_work(engine(), user.username, ids)),
    "resolved": (
        "Resolve",
        lambda ids, why: close_exceptions(engine(), user.username, ids, "resolved", why),
    ),
    "ignored": ("Ignore", _ignore),
    "reopen": ("Reopen", lambda ids, why: reopen(engine(), user.username, ids, why)),
}
SHOWN_IDS = 30  # a confirmation names this many exceptions, then says how many more


def _run(action: str, ids: list[int], value: str, gone: list[int]) -> None:
    """on_click of the confirmation dialog: the command, then a message for the next run;
    the rows acted on, and those named as gone, are unticked."""
    untick(EDITOR, [*ids, *gone])
    result = act(COMMANDS[action][1], ids, value)
    if result is not None:
        skipped = "; ".join(f"{i}: {why}" for i, why in list(result.skipped.items())[:SHOWN_IDS])
        st.session_state["flash"] = (
            "ok",
            f"{action}: {len(result.changed)} exception(s)"
            + (f" (skipped {skipped})" if skipped else ""),
        )
        # A reason is given for one action: left in its box, it would go with the next.
        for box in ("reason", "group_reason"):
            if value and st.session_state.get(box) == value:
                st.session_state[box] = ""
    st.cache_data.clear()


def _add_comment(exception_id: int) -> None:
    """on_click of "Add comment": post the box's text, then empty the box."""
    note = st.session_state.get("comment_text", "")
    if not note.strip():
        st.session_state["flash"] = ("error", "Write the comment first, then add it.")
        return
    if act(comment, engine(), user.username, exception_id, note) is not None:
        st.session_state["flash"] = ("ok", "comment added")
        st.session_state["comment_text"] = ""
    st.cache_data.clear()


def _save_view() -> None:
    """on_click of "Save view": the filters in the address, under the name typed."""
    name = st.session_state.get("view_name", "")
    if act(save_view, engine(), user.username, name, query_string()) is not None:
        st.session_state["flash"] = ("ok", f"view '{name.strip()}' saved")
        st.session_state["view_name"] = ""


def _delete_view() -> None:
    """on_click of "Delete view": the view chosen, the user's own."""
    name = st.session_state.get("view_pick")
    if name and act(delete_view, engine(), user.username, name) is not None:
        st.session_state["flash"] = ("ok", f"view '{name}' deleted")


def saved_views() -> None:
    """The user's saved views: each a link (to open, or to send), saving the filters in
    force under a name, deleting one."""
    views = load(list_views, engine(), user.username)
    with st.expander(f"Saved views ({len(views)})"):
        for view in views:
            st.markdown(f"[{view.name}]({view.address})")
        if not views:
            st.caption("None yet: set the filters, name them and save.")
        a, b = st.columns([3, 1], vertical_alignment="bottom")
        a.text_input("Name", key="view_name", placeholder="e.g. critical, unassigned")
        b.button("Save these filters", key="save_view", on_click=_save_view)
        if views:
            a, b = st.columns([3, 1], vertical_alignment="bottom")
            a.selectbox("View", [view.name for view in views], key="view_pick")
            b.button("Delete view", key="delete_view", on_click=_delete_view)


def ask(action: str, ticked: list[int], value: str, within: ExceptionFilter | None = None) -> None:
    """Open the confirmation for the ticked exceptions: those that still match the list
    (or `within`) are acted on, the others are named and left alone. (Worked out once, as
    the dialog opens: its Confirm button must stay the same widget while it is open.)"""
    current = load(still_matching, engine(), within or filters, ticked)
    confirm(
        action,
        [i for i in ticked if i in current],
        value,
        [i for i in ticked if i not in current],
    )


@st.dialog("Confirm")
def confirm(action: str, ids: list[int], value: str, gone: list[int]) -> None:
    count = f"{len(ids)} exception" + ("" if len(ids) == 1 else "s")
    named = ", ".join(map(str, ids[:SHOWN_IDS]))
    more = f" and {len(ids) - SHOWN_IDS:,} more" if len(ids) > SHOWN_IDS else ""
    st.write(f"**{COMMANDS[action][0]} {count}?** {named}{more}")
    if value:
        st.caption(f"owner: {value}" if action == "assign" else f"reason: {value}")
    if action == "ignored":
        st.caption(f"ignored {_ignore_terms()[1]}")
    if action == "resolved" and (breaks := load(record_breaks, engine(), ids)):
        which = (
            "This is a break"
            if len(ids) == 1
            else f"{breaks} of these {'is a break' if breaks == 1 else 'are breaks'}"
        )
        st.info(
            f"{which} between the systems of record: resolved here, a break still in the "
            "records opens again at the reconciliation's next run. To keep a known difference "
            "closed, accept it on the [Reconciliation](/reconciliation) page (with its reason)."
        )
    if gone:
        st.warning(
            f"Left alone: {', '.join(map(str, gone))} no longer match this list: outside "
            "the filters now in force, or closed or changed since you ticked them."
        )
    # The callback acts; the rerun closes the dialog (a dialog reruns alone otherwise).
    if st.button(
        "Confirm",
        type="primary",
        key="confirm_action",
        disabled=not ids,
        on_click=_run,
        args=(action, ids, value, gone),
    ):
        st.rerun()


def group_actions(filters: ExceptionFilter, groups: pd.DataFrame) -> str:
    """The groups of alike failures, the pick of one (whose exceptions the list below
    shows) and actions on every open exception of it. Returns the fingerprint picked."""
    st.dataframe(readable(groups), hide_index=True)
    samples = dict(zip(groups["fingerprint"], groups["sample_message"], strict=True))
    counts = dict(zip(groups["fingerprint"], groups["exceptions"], strict=True))
    a, b, c, d, e = st.columns([4, 3, 2, 2, 2], vertical_alignment="bottom")
    fingerprint = a.selectbox(
        "Group",
        list(samples),
        key="group_pick",
        format_func=lambda f: f"{samples[f]} · {counts[f]:,} exception(s)",
    )
    why = b.text_input("Reason (to resolve or ignore the group)", key="group_reason")
    open_ones = replace(filters, fingerprint=fingerprint, statuses=OPEN_STATUSES)
    if c.button("Assign all to me", key="group_assign"):
        ask("assign", load(matching_ids, engine(), open_ones), user.username, open_ones)
    for column, label, action in ((d, "Resolve all", "resolved"), (e, "Ignore all", "ignored")):
        if column.button(label, key=f"group_{action}"):
            if why.strip():
                ask(action, load(matching_ids, engine(), open_ones), why, open_ones)
            else:
                st.warning(f"Give a reason to {label.lower()} (it goes into the audit trail).")
    return fingerprint


st.title("Exceptions")
show_flash()
processes = list(policy().processes)
ANY = "(any)"
owners = load(_owners, user.username)
PROCESS = Linked("f_process", "process", ANY, [ANY, *processes])
KIND = Linked("f_kind", "kind", ANY, [ANY, *EXCEPTION_KINDS])
OWNER = Linked("f_owner", "owner", ANY, [ANY, *owners])
AGE = Linked("f_age", "age", "any age", list(AGES))
RECONCILED_IN = Linked("f_reconciled_in", "reconciled_in", ANY, [ANY, "telemetry", "records"])
ORDER = Linked("f_order", "order", "most urgent", list(ORDERS))
LINKED = [
    Linked("f_status", "status", tuple(OPEN_STATUSES), OPEN_STATUSES + CLOSED_STATUSES),
    PROCESS,
    Linked("f_impact", "impact", (), IMPACTS),
    KIND,
    Linked("f_system", "system"),
    OWNER,
    AGE,
    Linked("f_search", "q"),
    ORDER,
    Linked("grouped", "grouped", "", ["", "yes"]),
    Linked("f_regressed", "regressed", "", ["", "yes"]),
    Linked("f_currency", "currency"),
    Linked("f_close", "close", "", ["", "blocking"]),
    RECONCILED_IN,
]
seed_from_link(LINKED)
# The stage's choices follow the process: seeded once its process is known.
process_choice = st.session_state["f_process"]
stage_choices = policy().processes[process_choice].stage_names() if process_choice != ANY else ()
STAGE = Linked("f_stage", "stage", ANY, [ANY, *stage_choices])
seed_from_link([STAGE])
if st.session_state["f_stage"] not in STAGE.choices:  # the process changed under it
    st.session_state["f_stage"] = ANY
with st.expander("Filters", expanded=True):
    a, b, c, d = st.columns(4)
    statuses = a.multiselect(
        "Status", OPEN_STATUSES + CLOSED_STATUSES, held("f_status"), key="f_status"
    )
    process = b.selectbox("Process", PROCESS.choices, held_index(PROCESS), key=PROCESS.key)
    stage = c.selectbox("Stage", STAGE.choices, held_index(STAGE), key="f_stage")
    impact = d.multiselect("Impact", IMPACTS, held("f_impact"), key="f_impact")
    a, b, c, d, e = st.columns(5)
    kind = a.selectbox("Kind", KIND.choices, held_index(KIND), key=KIND.key)
    system = b.text_input("System", held("f_system"), key="f_system")
    owner = c.selectbox("Owner", OWNER.choices, held_index(OWNER), key=OWNER.key)
    age = d.selectbox("Age", AGE.choices, held_index(AGE), key=AGE.key)
    search = e.text_input("Text (message, IDs)", held("f_search"), key="f_search")
    a, b, c = st.columns([1, 1, 3], vertical_alignment="bottom")
    currency = a.text_input("Currency", held("f_currency"), key="f_currency", max_chars=3)
    reconciled_in = b.selectbox(
        "Reconciliation breaks found in",
        RECONCILED_IN.choices,
        held_index(RECONCILED_IN),
        key=RECONCILED_IN.key,
        help="telemetry: values the systems reported for a transaction disagree; "
        "records: a reconciliation of the systems' records found the break",
    )
    blocking = c.toggle(
        "Blocking the month-end close (ERP-bound stages, first seen this month)",
        key="close_toggle",
        value=st.session_state["f_close"] == "blocking",
    )
st.session_state["f_close"] = "blocking" if blocking else ""
order = st.selectbox("Order", ORDER.choices, held_index(ORDER), key=ORDER.key)
grouped = st.toggle(
    "Group alike failures (by fingerprint)",
    key="grouped_toggle",
    value=st.session_state["grouped"] == "yes",
)
st.session_state["grouped"] = "yes" if grouped else ""
regressed = st.toggle(
    "Regressed only (failing again after a person resolved them)",
    key="regressed_toggle",
    value=st.session_state["f_regressed"] == "yes",
)
st.session_state["f_regressed"] = "yes" if regressed else ""
write_link([*LINKED, STAGE])
saved_views()
filters = ExceptionFilter(
    statuses=tuple(statuses),
    process=None if process == ANY else process,
    stage=None if stage == ANY else stage,
    system=system.strip() or None,
    impact=tuple(impact),
    kind=None if kind == ANY else kind,
    owner=None if owner == ANY else owner,
    older_than=AGES[age],
    search=search.strip() or None,
    regressed=regressed,
    currency=currency.strip().upper() or None,
    reconciled_in=None if reconciled_in == ANY else reconciled_in,
)
if blocking:
    erp_bound, month_start = close_blocking_scope(policy(), datetime.now(UTC))
    filters = replace(filters, stages=tuple(erp_bound), since=month_start)

# What the list below shows: every matching exception or, grouped, the picked group's (as
# an issue tracker shows one issue's events under the list of issues).
listed, of_what = filters, "matching exceptions"
if grouped:  # the groups count the matching exceptions too
    groups = load(_groups, filters)
    matching = shown = int(groups["matching"].iloc[0]) if not groups.empty else 0
    if matching:
        total = int(groups["group_count"].iloc[0])
        largest = f" (the {len(groups):,} largest shown)" if total > len(groups) else ""
        st.caption(f"{total:,} groups of {matching:,} matching exceptions{largest}")
        picked = group_actions(filters, groups.drop(columns=["matching", "group_count"]))
        listed = replace(filters, fingerprint=picked)
        shown = int(groups.set_index("fingerprint").at[picked, "exceptions"])
        of_what = "exceptions in this group"
else:
    matching = shown = load(_count, filters)
if not matching:
    st.info("No exceptions match these filters.")
    st.stop()
pages = -(-shown // PAGE_ROWS)
page = 1
if pages > 1:
    page = int(st.number_input(f"Page (of {pages:,})", 1, pages, 1, key="page"))
frame = load(_list, listed, page, order)
first = (page - 1) * PAGE_ROWS + 1
last = first + len(frame) - 1
st.caption(f"Showing {first:,} to {last:,} of {shown:,} {of_what}")
currencies = sorted(set(frame["currency"].dropna()))
if order == "largest amount" and len(currencies) > 1:  # no exchange rates are known here
    st.caption(
        f"Amounts in {', '.join(currencies)} are ranked as numbers, whatever their currency: "
        "filter one currency to rank like with like."
    )
if blocking:  # the overview's tiles of the close: the same sums, each transaction once
    stakes = load(_at_stake, listed)
    st.caption(
        "At stake over these exceptions, each transaction counted once (its largest "
        "amount), as the overview counts: "
        + "; ".join(
            f"{amount_text(amount, currency or None)} on {n:,} transaction{'s' * (n != 1)}"
            for currency, amount, n in stakes
        )
        if stakes
        else "No amount is at stake on these exceptions."
    )
# Each row's own address, within the filters in force: opening it shows that detail.
frame["link"] = [address("exceptions", id=int(i)) for i in frame["id"]]
frame["money"] = [
    "" if pd.isna(a) else amount_text(a, c)
    for a, c in zip(frame["amount"], frame["currency"], strict=True)
]
selected = selectable_table(
    frame,
    COLUMNS,
    EDITOR,
    {
        "link": st.column_config.LinkColumn("detail", display_text="open"),
        "message": st.column_config.TextColumn("message", width="large"),
        "money": st.column_config.TextColumn("amount"),
        "age_hours": st.column_config.NumberColumn("age (h)", format="%.1f"),
    },
)
st.download_button(
    f"Export CSV (all {shown:,})",
    _export(listed, order),
    "exceptions.csv",
    "text/csv",
    key="export",
)

st.subheader(f"Act on {len(selected)} selected")
a, b, c, d, e = st.columns([3, 2, 2, 2, 2], vertical_alignment="bottom")
new_owner = a.selectbox(  # yourself first: "assign to me" is the usual move
    "Assign to",
    owners,
    index=owners.index(user.username) if user.username in owners else None,
    placeholder="Choose who",
    key="assign_to",
)
if b.button("Assign", disabled=not (selected and new_owner), key="assign"):
    ask("assign", selected, new_owner)
if c.button("Assign to me", disabled=not selected, key="assign_to_me"):
    ask("assign", selected, user.username)
if d.button("Unassign", disabled=not selected, key="unassign"):
    ask("unassign", selected, "")
if e.button("Start work", disabled=not selected, key="start_work"):
    ask("start work", selected, "")
a, b = st.columns([3, 4], vertical_alignment="bottom")
ignore_for = a.radio("Ignore", IGNORE_FOR, key="ignore_for", horizontal=True)
if ignore_for == "until a date":
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    b.date_input(
        "Until (00:00 UTC that day)", tomorrow + timedelta(days=6), tomorrow, key="ignore_until"
    )
a, b, c, d = st.columns([3, 2, 2, 2], vertical_alignment="bottom")
reason = a.text_input("Reason (to resolve, ignore or reopen)", key="reason")
# Not disabled for want of a reason: a browser commits the typed reason with the click.
for column, label, action in (
    (b, "Resolve", "resolved"),
    (c, "Ignore", "ignored"),
    (d, "Reopen", "reopen"),
):
    if column.button(label, disabled=not selected, key=label.lower()):
        if reason.strip():
            ask(action, selected, reason)
        else:
            st.warning(f"Give a reason to {label.lower()} (it goes into the audit trail).")

st.subheader("Detail")
messages = dict(zip(frame["id"].tolist(), frame["message"], strict=True))
options = list(messages)
linked = linked_id()  # /exceptions?id=N: this exception, in this list or not
if linked is not None and linked not in messages:
    options.insert(0, linked)
chosen = st.selectbox(
    "Exception",
    options,
    index=options.index(linked) if linked in options else 0,
    key="detail_id",
    format_func=lambda i: f"{i} · {messages.get(i, '(not in this list)')}",
)
st.query_params["id"] = str(chosen)  # the address of what is shown, to paste in a ticket
detail = load(exception_detail, engine(), int(chosen))
top, bottom = st.columns(3), st.columns(3)
# Its state now, whichever list it was opened from (the resolution as text: a person wrote it).
state = [f"Status: {detail['status']}", f"owner: {detail['owner'] or 'nobody'}"]
if detail["resolution"]:
    state.append(f"resolution: {detail['resolution']}")
summary = " · ".join(state)
st.text(summary)
top[0].metric("Customer", detail["customer_id"] or "—")
top[1].metric("Invoice", detail["invoice_id"] or "—")
top[2].metric("Amount", amount_text(detail["amount"], detail["currency"]))
bottom[0].metric("Legal entity", detail["legal_entity"] or "—")
bottom[1].metric("Age", age_text(detail["age"]))
bottom[2].metric(
    "Due",
    moment_text(detail["due_at"]),
    "overdue" if detail["overdue"] else None,
    delta_color="inverse",  # red, without an arrow: overdue is a state, not a trend
    delta_arrow="off",
)
if detail["regressed_from"] is not None:
    earlier = detail["regressed_from"]
    st.warning(
        f"**Regressed**: this failure came after a person resolved exception {earlier} "
        f"([open it]({address('exceptions', id=earlier)}))."
    )
if detail["status"] == "ignored":
    if detail["ignored_until"] is not None:
        st.info(f"Ignored until {moment_text(detail['ignored_until'])}: it reopens then.")
    elif detail["ignored_until_recurs"]:
        st.info("Ignored until its failure recurs: the next failure reopens it.")
st.caption(
    f"{plain(detail['kind'])} at {plain(detail['stage'])} "
    f"({plain(detail['system'] or 'any system')}) · "
    f"{plain(detail['error_type'])}: {plain(detail['message'])}"
)
st.markdown("**Failures** (each occurrence, with the trace that reported it)")
st.dataframe(readable(detail["occurrences"]), hide_index=True)
left, right = st.columns(2)
left.markdown("**Transaction timeline**")
left.dataframe(readable(detail["timeline"]), hide_index=True)
right.markdown("**History**")
with right.container(height=320):
    for event in reversed(detail["history"]):  # newest first
        history_event(event)
    if not detail["history"]:
        st.caption("No one has acted on this exception yet.")
st.text_area("Comment", key="comment_text")
# Never disabled: a browser commits the text when the button is clicked, so one click
# posts what was typed; the callback then clears the box.
st.button("Add comment", key="add_comment", on_click=_add_comment, args=(int(chosen),))

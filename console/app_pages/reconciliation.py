"""Reconciliation against the systems of record: the runs with their counts and status, the
accuracy trend, the breaks filtered, one break with the records of every source side by
side (the differing fields highlighted), its exception and transaction, and, for finance
ops, accepting a known difference with a reason."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pandas as pd
import plotly.express as px
import streamlit as st

from console._auth import act, can, page_user, recheck_sign_in
from console._links import Linked, held, held_index, seed_from_link, write_link
from console._resources import SHOWN_FLASH_KEY, engine, load, rerun_for_news, show_flash
from console._widgets import moment_text, plain
from q2c.vocabulary import BREAK_KINDS
from queries.reconciliation import (
    BreakFilter,
    accept_difference,
    accuracy_trend,
    break_detail,
    list_breaks,
    list_runs,
    reconciliation_names,
)

user = page_user("reconciliation.view")
ACCEPTS = can(user, "reconciliation.accept")
ANY = "(any)"
HIGHLIGHT = "background-color: rgba(255, 75, 75, 0.25); font-weight: 600"


@st.cache_data(ttl=5, show_spinner=False)
def _runs(actor: str, reconciliation: str | None) -> list[dict[str, Any]]:
    return list_runs(engine(), actor, reconciliation, 200)


@st.cache_data(ttl=5, show_spinner=False)
def _run(actor: str, run_id: int) -> list[dict[str, Any]]:
    return list_runs(engine(), actor, run_id=run_id)


@st.cache_data(ttl=5, show_spinner=False)
def _names(actor: str) -> list[str]:
    return reconciliation_names(engine(), actor)


@st.cache_data(ttl=5, show_spinner=False)
def _trend(actor: str, reconciliation: str | None) -> list[dict[str, Any]]:
    return accuracy_trend(engine(), actor, reconciliation)


BREAKS_SHOWN = 500


@st.cache_data(ttl=5, show_spinner=False)
def _breaks(actor: str, filters: BreakFilter) -> list[dict[str, Any]]:
    return list_breaks(engine(), actor, limit=BREAKS_SHOWN + 1, filters=filters)


def _link(page: str, **params: object) -> str:
    """The address of `page` with only `params` (a link to another object, not filters)."""
    return f"/{page}?{urlencode(params)}"


def _percent(accuracy: float | None) -> str:
    return "—" if accuracy is None or pd.isna(accuracy) else f"{accuracy:.2%}"


FOLLOW_SECONDS = 15  # how soon a scheduled run shows
FOLLOWED_RUNS = 5


def _marks(runs: list[dict[str, Any]]) -> tuple[tuple[Any, Any], ...]:
    """The latest runs as the page follows them: (id, status) of the newest few, so that a
    run that starts, ends or fails shows, whichever is newest (one left running included)."""
    return tuple((run["run_id"], run["status"]) for run in runs[:FOLLOWED_RUNS])


@st.cache_data(ttl=1, show_spinner=False)
def _newest(actor: str, reconciliation: str | None) -> list[dict[str, Any]]:
    return list_runs(engine(), actor, reconciliation, FOLLOWED_RUNS)


@st.fragment(run_every=FOLLOW_SECONDS)
def follow_runs(reconciliation: str | None, shown: tuple[tuple[Any, Any], ...]) -> None:
    """Once a run has started, ended or failed since the page was drawn, the whole page
    shows it: runs, trend and breaks read afresh, the break being read kept."""
    recheck_sign_in()  # it reruns on its own
    if _marks(load(_newest, user.username, reconciliation)) != shown:
        for cached in (_runs, _names, _trend, _breaks, _newest):
            cached.clear()
        rerun_for_news()


def runs_section(runs: list[dict[str, Any]]) -> None:
    st.subheader("Runs")
    if not runs:
        st.info(
            "No reconciliation has run yet: set Q2C_RECONCILE_CONFIG for the scheduler, or run "
            "`q2c reconcile run`."
        )
        return
    latest: dict[str, dict[str, Any]] = {}
    for run in runs:
        latest.setdefault(run["reconciliation"], run)
    for name, run in latest.items():
        if run["status"] == "failed":
            at = f" (at {plain(run['error_at'])})" if run["error_at"] else ""
            st.error(
                f"The latest run of **{plain(name)}** (run {run['run_id']}) failed: "
                f"{plain(run['error'])}{at}"
            )
    frame = pd.DataFrame(
        [
            {
                "run": run["run_id"],
                "reconciliation": run["reconciliation"],
                "status": run["status"],
                "started": moment_text(run["started_at"], seconds=True),
                "checked": run["checked"],
                "matched": run["matched"],
                "pending": run["pending"],
                "accuracy": _percent(run["accuracy"]),
                "breaks": sum(run["breaks"].values()),
                "error": f"{run['error']} ({run['error_at'] or '-'})" if run["error"] else "",
                # The narrow figures first; these wide ones last, to scroll to.
                "by type": ", ".join(f"{t}: {n}" for t, n in sorted(run["breaks"].items())),
                "rows read": ", ".join(
                    f"{s}: {n:,}" for s, n in sorted(run["source_rows"].items())
                ),
            }
            for run in runs
        ]
    )
    # A failed run counted nothing: "—", as its accuracy, not "None" (numbers stay numbers,
    # to sort by).
    st.dataframe(frame, hide_index=True, width="stretch", key="recon_runs", placeholder="—")


def trend_section(reconciliation: str | None) -> None:
    st.subheader("Accuracy")
    trend = pd.DataFrame(load(_trend, user.username, reconciliation))
    if trend.empty:
        st.caption("The accuracy trend appears once a run has succeeded.")
        return
    pair = trend["source_a"].fillna("") + " ↔ " + trend["source_b"].fillna("")
    trend["series"] = (
        trend["reconciliation"] + ": " + pair.where(trend["source_a"].notna(), "all sources")
    )
    trend["accuracy %"] = trend["accuracy"] * 100
    chart = px.line(
        trend,
        x="started_at",
        y="accuracy %",
        color="series",
        markers=True,
        title="Accuracy per run: matched ÷ checked (whole and per source pair)",
        labels={"started_at": "run started"},
    )
    # Up to 100 % always, down to a little below the lowest: near-perfect runs stay apart.
    lowest = trend["accuracy %"].min()
    chart.update_yaxes(range=[max(0.0, lowest - 5), 100.5])
    # Ticks as far apart as the runs: seconds (or less) for runs seconds apart (a tick
    # format to the minute wrote the same label three times), days for weeks of them.
    chart.update_xaxes(
        tickformatstops=[
            {"dtickrange": [None, 1_000], "value": "%H:%M:%S.%L"},
            {"dtickrange": [1_000, 60_000], "value": "%H:%M:%S"},
            {"dtickrange": [60_000, 86_400_000], "value": "%b %d %H:%M"},
            {"dtickrange": [86_400_000, None], "value": "%b %d"},
        ]
    )
    st.plotly_chart(chart, width="stretch")


def records_table(detail: dict[str, Any]) -> None:
    """The records of every source side by side, a column a record (`erp #2` for a second
    one), a row a field; the fields the run found differing highlighted."""
    columns: dict[str, dict[str, Any]] = {}
    for source, records in sorted(detail["records"].items()):
        for n, rec in enumerate(records, 1):
            columns[source if len(records) == 1 else f"{source} #{n}"] = rec
    fields = sorted({f for rec in columns.values() for f in rec if f != "_at"})
    fields = [*fields, "_at"]
    table = pd.DataFrame(
        {name: [rec.get(f, "—") for f in fields] for name, rec in columns.items()},
        index=["from" if f == "_at" else f for f in fields],
    ).fillna("—")
    differing = set(detail["differing"])
    styled = table.style.apply(
        lambda row: [HIGHLIGHT if row.name in differing else "" for _ in row], axis=1
    )
    st.dataframe(styled, width="stretch", key="recon_records")
    missing = [
        kind.split(":", 1)[1] for kind in [detail["break_type"]] if kind.startswith("missing_in:")
    ]
    if missing:
        st.caption(f"No record in **{missing[0]}**.")
    if differing:
        verb = "differs" if len(differing) == 1 else "differ"
        st.caption(
            f"Highlighted: {', '.join(sorted(differing))} {verb} between the sources "
            "(numbers by more than their tolerance)."
        )


def detail_section(detail: dict[str, Any]) -> None:
    key, kind = detail["key"], detail["break_type"]
    st.subheader(f"{plain(detail['object'])} {plain(key)} · {plain(kind)}")
    st.caption(
        f"{detail['reconciliation']}, run {detail['run_id']} ({moment_text(detail['started_at'])})"
    )
    records_table(detail)
    links = []
    if detail["exception_id"] is not None:
        status = detail["exception_status"] or "?"
        exception = _link("exceptions", id=detail["exception_id"])
        links.append(f"[Exception {detail['exception_id']}]({exception}) — {status}")
    if detail["has_transaction"]:
        links.append(
            f"[Transaction {plain(detail['correlation_id'])}]"
            f"({_link('explorer', q=detail['correlation_id'])})"
            f" ({plain(detail['transaction_process'])}) — telemetry saw this {detail['object']}"
        )
    else:
        links.append("No transaction: telemetry never saw this key.")
    for line in links:
        st.markdown(line)
    # The page's one action is accepting this break: what came of it shows here, where the
    # person clicked, not at the top of a long page.
    show_flash()
    if detail["accepted_id"] is not None:
        st.success(
            f"Accepted as a known difference by {plain(detail['accepted_by'])} "
            f"({moment_text(detail['accepted_at'])}): {plain(detail['accepted_reason'])}. "
            "It is not raised again while the records are unchanged."
        )
    elif ACCEPTS:
        accept_form(detail)


def accept_form(detail: dict[str, Any]) -> None:
    # Keyed by the break it accepts: a click on a form the page has since replaced (the
    # list moved on while the reason was typed) is never applied to another break.
    shown = _break_id(detail)
    with st.form(f"recon_accept|{shown}", clear_on_submit=True):
        reason = st.text_area(
            "Reason (required)",
            key=f"recon_accept_reason|{shown}",
            placeholder="ERP rounds tax per line; agreed with the controller",
        )
        if st.form_submit_button("Accept difference", type="primary"):
            done = act(
                accept_difference,
                engine(),
                user.username,
                detail["run_id"],
                detail["key"],
                detail["break_type"],
                reason,
            )
            if done is not None:
                resolved = (
                    f"; exception {done.resolved_exception_id} resolved"
                    if done.resolved_exception_id
                    else ""
                )
                st.session_state["flash"] = (
                    "ok",
                    f"Accepted {detail['break_type']} of {detail['key']}{resolved}",
                )
                st.cache_data.clear()
            st.rerun()


def breaks_section(runs: list[dict[str, Any]], reconciliation: str | None) -> None:
    st.subheader("Breaks")
    run_ids = [str(run["run_id"]) for run in runs if run["status"] == "succeeded"]
    filters = [
        Linked("recon_run", "run", ANY, (ANY, *run_ids)),
        Linked("recon_kind", "kind", ANY, (ANY, *BREAK_KINDS)),
        Linked("recon_field", "field"),
        Linked("recon_search", "q"),
    ]
    seed_from_link(filters)
    run_field, kind_field, *_ = filters
    a, b, c, d = st.columns([1, 1, 1, 2])
    run = a.selectbox(
        "Run",
        run_field.choices,
        held_index(run_field),
        key="recon_run",
        format_func=lambda r: "latest of each" if r == ANY else f"run {r}",
    )
    kind = b.selectbox("Break", kind_field.choices, held_index(kind_field), key="recon_kind")
    field = c.text_input("Differing field", held("recon_field"), key="recon_field")
    search = d.text_input("Key contains", held("recon_search"), key="recon_search")
    write_link(filters)
    chosen = BreakFilter(
        run_id=None if run == ANY else int(run),
        reconciliation=reconciliation,
        kind=None if kind == ANY else kind,
        field=field.strip() or None,
        search=search.strip() or None,
    )
    rows = load(_breaks, user.username, chosen)
    if not rows:
        st.caption("No break matches." if any([kind != ANY, field, search]) else "No break.")
        return
    if len(rows) > BREAKS_SHOWN:  # one more was read, to know
        rows = rows[:BREAKS_SHOWN]
        st.caption(
            f"The first {BREAKS_SHOWN} breaks are listed, and there are more: narrow them by "
            "run, break, field or key."
        )
    frame = pd.DataFrame(
        [
            {
                "run": row["run_id"],
                "reconciliation": row["reconciliation"],
                "key": row["key"],
                "break": row["break_type"],
                "exception": row["exception_id"] and _link("exceptions", id=row["exception_id"]),
                "exception status": "accepted" if row["accepted"] else row["exception_status"],
            }
            for row in rows
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        key="recon_breaks",
        column_config={
            "exception": st.column_config.LinkColumn("exception", display_text=r"id=(\d+)")
        },
    )
    listed = [_break_id(row) for row in rows]
    chosen_break = _linked_break(runs, chosen)
    # The break a link names, or the one shown before a newer run replaced the list, stays
    # shown (from its run) until another is picked: the page never moves under a reader.
    options = listed if chosen_break in (None, *listed) else [chosen_break, *listed]
    picked = st.selectbox(
        "Show the records of",
        options,
        options.index(chosen_break) if chosen_break in options else 0,
        format_func=_break_label,
        key="recon_break",
    )
    run_id, key, kind_ = _break_parts(picked)
    st.query_params.update({"break_run": run_id, "key": key, "type": kind_})
    detail = load(break_detail, engine(), user.username, int(run_id), key, kind_)
    if detail is None:
        st.warning(
            f"Run {run_id} has no break {plain(kind_)} of {plain(key)}: the link may be "
            "mistyped, or the run pruned."
        )
        return
    detail_section(detail)


_SEP = "|"  # between a break's run, key and type (a key may hold one; a run or type not)


def _break_id(row: dict[str, Any]) -> str:
    """A break's identity on this page: its run, key and type."""
    return _SEP.join((str(row["run_id"]), row["key"], row["break_type"]))


def _break_parts(shown: str) -> tuple[str, str, str]:
    """A break's run, key and type, from its identity."""
    run_id, rest = shown.split(_SEP, 1)
    key, kind = rest.rsplit(_SEP, 1)
    return run_id, key, kind


def _break_label(shown: str) -> str:
    run_id, key, kind = _break_parts(shown)
    return f"{key} · {kind} (run {run_id})"


def _a_run_id(text: str) -> bool:
    """Whether `text` can be a run's id (a bigint), as a pasted address may hold anything."""
    return text.isascii() and text.isdigit() and len(text) < 19


def _linked_break(runs: list[dict[str, Any]], filters: BreakFilter) -> str | None:
    """The break the address names (`?break_run=N&key=K&type=T`: a pasted link, or the
    break shown last), if it is of a run and kind the filters show."""
    params = st.query_params
    if "key" not in params or "type" not in params:
        return None
    run_id, kind = params.get("break_run", ""), params["type"]
    if filters.kind and not kind.startswith(f"{filters.kind}:"):
        return None
    linked = next((run for run in runs if str(run["run_id"]) == run_id), None)
    if linked is None and _a_run_id(run_id):
        # A run older than those listed (a link pasted into a ticket weeks ago).
        linked = next(iter(load(_run, user.username, int(run_id))), None)
    if linked is None or filters.reconciliation not in (None, linked["reconciliation"]):
        return None
    if filters.run_id not in (None, linked["run_id"]):
        return None
    return _break_id({"run_id": run_id, "key": params["key"], "break_type": kind})


# What the last action left is shown beside the break it was for (`detail_section`): on a
# run that shows no break it is not kept for a later one.
st.session_state[SHOWN_FLASH_KEY] = None
st.title("Reconciliation")
st.caption(
    "The records themselves, compared across the systems of record (reconcile.yaml): "
    "not the telemetry-based reconciliation of the overview."
)
# Every reconciliation that has run, however long ago, with its own latest runs.
names = load(_names, user.username)
which = [Linked("recon_name", "reconciliation", ANY, (ANY, *names))]
seed_from_link(which)
name = st.selectbox("Reconciliation", which[0].choices, held_index(which[0]), key="recon_name")
write_link(which)
reconciliation = None if name == ANY else name
shown = load(_runs, user.username, reconciliation)
follow_runs(reconciliation, _marks(shown))
runs_section(shown)
if shown:
    trend_section(reconciliation)
    breaks_section(shown, reconciliation)

"""Dead letters and replays, for on-call: filter, inspect payloads (pretty-printed, secrets
masked), replay or discard one or many behind a confirmation, redrive everything a filter
matches at a set rate (dry run, progress, cancel), and watch the replays live."""

import difflib
import json
import math

import pandas as pd
import streamlit as st

from console._auth import act, page_user, recheck_sign_in
from console._links import Linked, held, held_index, linked_id, seed_from_link, write_link
from console._resources import engine, load, rerun_for_news, settings, show_flash
from console._widgets import age_text, plain, readable, selectable_table, untick
from q2c.errors import Q2CError
from queries.redrives import (
    RedrivePreview,
    cancel_redrive,
    list_redrives,
    preview_redrive,
    start_redrive,
)
from queries.replays import (
    dead_letter_detail,
    discard_dead_letters,
    list_dead_letters,
    replay_status,
    request_replays,
)

user = page_user("dead_letters.view")
EDITOR = "dead_letters_editor"
ANY = "(any)"
STATUSES = ("dead", "replay_pending", "replayed", "discarded", ANY)
COLUMNS = [
    "id",
    "occurred_at",
    "correlation_id",
    "process",
    "stage",
    "system",
    "status",
    "age",
    "attempts",
    "target_url",
    "error_type",
    "error_message",
    "replay_status",
    "replay_attempts",
]


@st.cache_data(ttl=3, show_spinner=False)
def _letters(username: str, status: str | None, search: str | None) -> pd.DataFrame:
    frame = pd.DataFrame(list_dead_letters(engine(), username, status, search))
    if not frame.empty:
        frame["age"] = frame["age"].map(age_text)
    return readable(frame)  # times in UTC as on every page, blanks for what is missing


def pretty(payload: str | None) -> str:
    """A JSON payload indented for reading (masked values are JSON strings too); any other
    payload as it is."""
    try:
        return json.dumps(json.loads(payload or ""), indent=2, ensure_ascii=False)
    except ValueError:
        return payload or ""


def _discard(ids: list[int], reason: str) -> None:
    """on_click of the discard confirmation."""
    untick(EDITOR, ids)
    result = act(discard_dead_letters, engine(), user.username, ids, reason)
    if result is not None:
        left = "; ".join(f"{i}: {why}" for i, why in result.skipped.items())
        st.session_state["flash"] = (
            "ok" if result.changed else "error",
            f"Discarded {len(result.changed)}" + (f" (left alone {left})" if left else ""),
        )
        if st.session_state.get("discard_reason") == reason:  # given for this discard only
            st.session_state["discard_reason"] = ""
    st.cache_data.clear()


@st.dialog("Confirm discard")
def confirm_discard(ids: list[int], reason: str) -> None:
    st.write(
        f"**Discard {len(ids)} dead letter(s)?** {', '.join(map(str, ids))}: they will not be "
        "replayed."
    )
    st.caption(f"reason: {plain(reason)}")
    if st.button(
        "Discard", type="primary", key="confirm_discard", on_click=_discard, args=(ids, reason)
    ):
        st.rerun()


def _start_redrive(search: str | None, rate: float) -> None:
    """on_click of the redrive confirmation."""
    started = act(
        start_redrive, engine(), user.username, search, settings().allowed_replay_hosts, rate
    )
    if started is not None:
        redrive, outcome = started
        st.session_state["flash"] = (
            "ok",
            f"Redrive {redrive.id}: {redrive.total} replay(s) queued at {rate:g} a second"
            + (f"; {len(outcome.refused)} refused" if outcome.refused else ""),
        )
    st.cache_data.clear()


@st.dialog("Confirm redrive")
def confirm_redrive(search: str | None, rate: float, preview: RedrivePreview) -> None:
    """Ask before a redrive, with its dry run (worked out once, as the dialog opens: its
    button must stay the same widget while it is open)."""
    count = len(preview.replayable)
    st.write(
        f"**Replay {count} dead letter(s)** matching “{search or 'anything'}”, at most "
        f"{rate:g} a second (about {_seconds(count, rate)})?"
    )
    for why, refused in preview.refused.items():
        st.caption(f"{refused} left alone: {why}")
    if st.button(
        "Start redrive",
        type="primary",
        key="confirm_redrive",
        disabled=not count,
        on_click=_start_redrive,
        args=(search, rate),
    ):
        st.rerun()


def _seconds(count: int, rate: float) -> str:
    """How long `count` replays take at `rate` a second, rounded up ("1 s", not "0 s")."""
    return f"{math.ceil(count / rate):,} s"


def _replay(ids: list[int], payload: str | None, gone: list[int], original: str) -> None:
    """on_click of the confirmation: request the replays, report what happened; the
    letters replayed, and those named as gone, are unticked."""
    untick(EDITOR, [*ids, *gone])
    outcome = act(
        request_replays, engine(), user.username, ids, settings().allowed_replay_hosts, payload
    )
    if outcome is not None:
        if payload is not None:  # the box shows the original again: an edit sent is not
            for letter in outcome.created:  # sent again by the next click
                st.session_state[f"edit_payload_{letter}"] = original
        parts = [f"{len(outcome.created)} queued"]
        if outcome.existing:
            parts.append(f"{len(outcome.existing)} already under way")
        parts += [f"{letter} refused: {why}" for letter, why in outcome.refused.items()]
        st.session_state["flash"] = (
            "error" if outcome.refused and not outcome.created else "ok",
            "Replays: " + "; ".join(parts),
        )
    st.cache_data.clear()


@st.dialog("Confirm replay", width="large")
def confirm(
    ticked: list[int],
    payload: str | None = None,
    gone: list[int] | None = None,
    original: str = "",
) -> None:
    """Ask before replaying; name the ticked dead letters that left the list meanwhile
    (replayed or discarded by someone else), which are left alone."""
    ids = [i for i in ticked if i not in (gone or [])]
    st.write(
        f"Send **{len(ids)}** dead letter(s) to their targets again: {', '.join(map(str, ids))}"
    )
    if gone:
        st.warning(
            f"Left alone: {', '.join(map(str, gone))} are no longer in this list: outside "
            "the filters now in force, or replayed or discarded since you ticked them."
        )
    if payload is not None:
        st.caption(
            "with the edited payload: the changes against the original below; each ••• left "
            "as it is is sent as its original value (the original stays in the dead letter)"
        )
        changes = difflib.unified_diff(
            original.splitlines(), payload.splitlines(), "original", "edited", lineterm=""
        )
        st.code("\n".join(changes) or "(no change)", language="diff")
    # The callback acts; the rerun closes the dialog (a dialog reruns alone otherwise).
    if st.button(
        "Replay",
        type="primary",
        key="confirm_replay",
        disabled=not ids,
        on_click=_replay,
        args=(ids, payload, gone or [], original),
    ):
        st.rerun()


st.title("Dead letters & replays")
show_flash()
# /dead_letters?status=replayed&q=INV-1: that list, to paste in a ticket.
STATUS = Linked("dl_status", "status", "dead", STATUSES)
LINKED = [STATUS, Linked("dl_search", "q")]
seed_from_link(LINKED)
a, b = st.columns([1, 3])
status = a.selectbox("Status", STATUSES, held_index(STATUS), key=STATUS.key)
search = b.text_input("Search (correlation ID, target, error)", held("dl_search"), key="dl_search")
write_link(LINKED)
frame = load(_letters, user.username, None if status == ANY else status, search or None)

if frame.empty:
    st.info("No dead letters match.")
else:
    selected = selectable_table(frame, COLUMNS, EDITOR)
    listed = set(frame["id"])
    a, b, c = st.columns([2, 3, 2], vertical_alignment="bottom")
    if a.button(
        f"Replay {len(selected)} selected",
        disabled=not selected,
        type="primary",
        key="replay_selected",
    ):
        confirm(selected, None, [i for i in selected if i not in listed])
    why = b.text_input("Reason (to discard)", key="discard_reason")
    # Not disabled for want of a reason: a browser commits the typed reason with the click.
    if c.button(f"Discard {len(selected)} selected", disabled=not selected, key="discard"):
        if why.strip():
            confirm_discard(selected, why)
        else:
            st.warning("Give a reason to discard (it goes into the audit trail).")


listed_ids = [] if frame.empty else frame["id"].tolist()
letters = list(listed_ids)
linked = linked_id()  # /dead_letters?id=N: this dead letter, in this list or not
linked_detail = None  # read once, to know it exists, and shown if chosen
if linked is not None and linked not in letters:
    try:
        linked_detail = dead_letter_detail(engine(), user.username, linked)
        letters.insert(0, linked)
    except Q2CError as refused:  # none such (any more): the list's own, and say so
        st.warning(f"The link's dead letter cannot be shown: {refused}.")
if letters:
    st.subheader("Payload")
    chosen = st.selectbox(
        "Dead letter",
        letters,
        index=letters.index(linked) if linked in letters else 0,
        key="payload_id",
        format_func=lambda i: str(i) if i in listed_ids else f"{i} (not in this list)",
    )
    st.query_params["id"] = str(chosen)  # the address of what is shown
    if chosen not in listed_ids:  # the box may still show the label it had in the list
        st.caption(f"Dead letter {chosen} is not in this list (filters or status changed).")
    detail = (
        linked_detail
        if linked_detail is not None and chosen == linked
        else load(dead_letter_detail, engine(), user.username, int(chosen))
    )
    shown = pretty(detail["payload"])  # masked by the query layer
    left, right = st.columns(2)
    left.markdown(
        f"**{plain(detail['method'])}** {plain(detail['target_url'])} · status "
        f"**{detail['status']}**"
    )
    left.code(shown, language="json")
    right.markdown("**Headers** (secrets masked)")
    right.json(detail["headers"] or {})
    right.markdown("**Replays of this message**")
    right.dataframe(readable(detail["replays"]), hide_index=True)
    edited_payload = st.text_area(
        "Edit the payload before replaying", shown, height=200, key=f"edit_payload_{chosen}"
    )
    # Never disabled: a browser commits the edit when the button is clicked, so one click
    # replays what is in the box (unchanged, it is the original message).
    if st.button("Replay with this payload", key="replay_edited"):
        if edited_payload == shown:
            confirm([int(chosen)])
        else:
            try:
                json.loads(edited_payload)
            except ValueError:
                st.warning("The edited payload is not JSON; it will be sent as written.")
            confirm([int(chosen)], edited_payload, original=shown)


def _preview(search: str | None) -> RedrivePreview:
    """What a redrive of the letters `search` matches would do (a dry run)."""
    return load(preview_redrive, engine(), user.username, search, settings().allowed_replay_hosts)


with st.expander("Redrive every dead letter matching the search", key="redrive_section"):
    st.caption(
        "Replays every dead (not yet replayed) letter the search above matches, however many, "
        "at most the rate below: the targets are not flooded. A dry run counts first."
    )
    a, b, c = st.columns([2, 1, 1], vertical_alignment="bottom")
    rate = a.number_input("Replays a second", 0.1, 1000.0, 5.0, step=1.0, key="redrive_rate")
    if b.button("Dry run", key="redrive_dry_run"):
        preview = _preview(search or None)
        st.info(
            f"{preview.matching} dead letter(s) match; {len(preview.replayable)} would be "
            f"replayed in about {_seconds(len(preview.replayable), rate)}."
            + "".join(f"\n\n{n} left alone: {why}" for why, n in preview.refused.items())
        )
    if c.button("Redrive…", type="primary", key="redrive"):
        preview = _preview(search or None)
        confirm_redrive(search or None, float(rate), preview)


def _cancel(redrive_id: int) -> None:
    """on_click of a redrive's Cancel."""
    cancelled = act(cancel_redrive, engine(), user.username, redrive_id)
    if cancelled is not None:
        st.session_state["flash"] = ("ok", f"Redrive {redrive_id}: {cancelled} cancelled")
    # The click reruns only this section; the page's message and list are to follow, the
    # list read afresh (the cancelled letters are dead again).
    _letters.clear()
    st.session_state["rerun_page"] = True


SEEN_REPLAYS_KEY, REDRIVING_KEY = "seen_replay_statuses", "redrive_under_way"


def _rerun_page_when_replays_moved(rows: list[dict], redriving: bool) -> None:
    """Rerun the whole page when a replay of a letter it shows (listed, or in the payload
    pane) has moved on (sent, failed, a new one) since this section last looked: the list
    and the pane, which this section does not redraw, would otherwise still say "dead" or
    "replay_pending" of a letter replayed. Only from this section's own runs (the page's
    run has just read them), and not while a redrive is under way, whose replays move
    every few seconds: the page would rerun all the time, closing any dialog opened on it.
    Its progress is shown here; the page follows once it is over."""
    shown = set(letters)
    statuses = {row["id"]: row["status"] for row in rows if row["dead_letter_id"] in shown}
    seen = st.session_state.get(SEEN_REPLAYS_KEY)
    ended = st.session_state.get(REDRIVING_KEY, False) and not redriving
    st.session_state[REDRIVING_KEY] = redriving
    if redriving and seen is not None:
        return  # compared with what was seen before the redrive, once it is over
    st.session_state[SEEN_REPLAYS_KEY] = statuses
    # A redrive just over: its letters that failed are dead again, back in the list.
    if ended or (seen is not None and seen != statuses):
        _letters.clear()  # read afresh, not the list of a few seconds ago
        rerun_for_news()  # the page's run records what it shows: no second rerun


@st.fragment(run_every=2)
def live_status() -> None:
    recheck_sign_in()  # it reruns on its own, every 2 s
    if st.session_state.pop("rerun_page", False):
        st.rerun()  # the whole page: the cancelled letters are back in the list
    redrives = load(list_redrives, engine(), user.username, 5)
    if redrives:
        st.subheader("Redrives (live)")
    for redrive in redrives:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(redrive.statuses.items()))
        a, b = st.columns([5, 1], vertical_alignment="center")
        a.progress(
            redrive.done / redrive.total if redrive.total else 1.0,
            text=f"Redrive {redrive.id} by {redrive.requested_by} "
            f"(“{redrive.filter.get('search') or 'anything'}”, {redrive.rate_per_second:g}/s): "
            f"{redrive.done} of {redrive.total} done · {counts or 'nothing queued'}",
        )
        if redrive.pending and redrive.cancelled_at is None:
            b.button(
                "Cancel", key=f"cancel_redrive_{redrive.id}", on_click=_cancel, args=(redrive.id,)
            )
        elif redrive.cancelled_at is not None:
            b.caption("cancelled")
    st.subheader("Replays (live)")
    rows = load(replay_status, engine(), user.username, 50)
    redriving = any(r.pending and r.cancelled_at is None for r in redrives)
    _rerun_page_when_replays_moved(rows, redriving)
    if rows:
        st.dataframe(
            readable(rows)[
                [
                    "id",
                    "dead_letter_id",
                    "requested_by",
                    "requested_at",
                    "status",
                    "attempts",
                    "response_code",
                    "error",
                ]
            ],
            hide_index=True,
        )
    else:
        st.caption("No replays requested yet.")


st.session_state[SEEN_REPLAYS_KEY] = None  # this run shows the latest: its section records
live_status()

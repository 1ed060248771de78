"""Dead letters and replays, for on-call: filter, inspect payloads (secrets masked),
replay one or many behind a confirmation, and watch the replays live."""

import json

import pandas as pd
import streamlit as st

from console._auth import page_user
from console._resources import act, engine, load, settings, show_flash
from console._widgets import selectable_table
from queries.masking import mask_headers, mask_secrets
from queries.replays import dead_letter_detail, list_dead_letters, replay_status, request_replays

user = page_user("dead_letters.view")
COLUMNS = [
    "id",
    "occurred_at",
    "correlation_id",
    "process",
    "stage",
    "system",
    "status",
    "target_url",
    "error_type",
    "error_message",
    "replay_status",
    "replay_attempts",
]


@st.cache_data(ttl=3, show_spinner=False)
def _letters(username: str, status: str | None, search: str | None) -> pd.DataFrame:
    return pd.DataFrame(list_dead_letters(engine(), username, status, search))


def _replay(ids: list[int], payload: str | None) -> None:
    """on_click of the confirmation: request the replays, report what happened."""
    outcome = act(
        request_replays, engine(), user.username, ids, settings().allowed_replay_hosts, payload
    )
    if outcome is not None:
        parts = [f"{len(outcome.created)} queued"]
        if outcome.existing:
            parts.append(f"{len(outcome.existing)} already under way")
        parts += [f"{letter} refused: {why}" for letter, why in outcome.refused.items()]
        st.session_state["flash"] = (
            "error" if outcome.refused and not outcome.created else "ok",
            "Replays: " + "; ".join(parts),
        )
    st.cache_data.clear()


@st.dialog("Confirm replay")
def confirm(ids: list[int], payload: str | None = None) -> None:
    st.write(
        f"Send **{len(ids)}** dead letter(s) to their targets again: {', '.join(map(str, ids))}"
    )
    if payload is not None:
        st.caption("with the edited payload below (the original stays in the audit trail)")
        st.code(payload)
    # The callback acts; the rerun closes the dialog (a dialog reruns alone otherwise).
    if st.button(
        "Replay", type="primary", key="confirm_replay", on_click=_replay, args=(ids, payload)
    ):
        st.rerun()


st.title("Dead letters & replays")
show_flash()
a, b = st.columns([1, 3])
status = a.selectbox(
    "Status", ["dead", "replay_pending", "replayed", "discarded", "(any)"], key="dl_status"
)
search = b.text_input("Search (correlation ID, target, error)", key="dl_search")
frame = load(_letters, user.username, None if status == "(any)" else status, search or None)

if frame.empty:
    st.info("No dead letters match.")
else:
    selected = selectable_table(frame, COLUMNS, "dead_letters_editor")
    if st.button(
        f"Replay {len(selected)} selected",
        disabled=not selected,
        type="primary",
        key="replay_selected",
    ):
        confirm(selected)

    st.subheader("Payload")
    chosen = st.selectbox("Dead letter", frame["id"].tolist(), key="payload_id")
    detail = load(dead_letter_detail, engine(), user.username, int(chosen))
    left, right = st.columns(2)
    left.markdown(f"**{detail['method']}** `{detail['target_url']}`")
    left.code(mask_secrets(detail["payload"]), language="json")
    right.markdown("**Headers** (secrets masked)")
    right.json(mask_headers(detail["headers"] or {}))
    right.markdown("**Replays of this message**")
    right.dataframe(pd.DataFrame(detail["replays"]), hide_index=True)
    edited_payload = st.text_area(
        "Edit the payload before replaying", detail["payload"] or "", key=f"edit_payload_{chosen}"
    )
    if st.button(
        "Replay with this payload",
        key="replay_edited",
        disabled=edited_payload == (detail["payload"] or ""),
    ):
        try:
            json.loads(edited_payload)
        except ValueError:
            st.warning("The edited payload is not JSON; it will be sent as written.")
        confirm([int(chosen)], edited_payload)


@st.fragment(run_every=2)
def live_status() -> None:
    st.subheader("Replays (live)")
    rows = load(replay_status, engine(), user.username, 50)
    if rows:
        st.dataframe(
            pd.DataFrame(rows)[
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


live_status()

"""Your API tokens: personal access tokens for the `q2c` command line, each shown once when
it is created, listed by prefix, and revocable at once."""

from datetime import timedelta

import pandas as pd
import streamlit as st

from console._auth import act, page_user
from console._resources import engine, load, show_flash
from console._widgets import moment_text
from queries.tokens import TokenInfo, create_token, list_tokens, revoke_token

LIFETIMES = {"7 days": 7, "30 days": 30, "90 days": 90, "1 year": 366}
NEW_TOKEN = "new_token"  # session key of the token just created, until it is dismissed

user = page_user("dashboards.view")
st.title("API tokens")
st.caption(
    "Personal access tokens let the `q2c` command line act as you, with your role. Keep "
    "them like passwords: set one as `Q2C_TOKEN` in your shell or pass `--token`."
)
show_flash()


def _create(name: str, days: int) -> None:
    """on_click of "Create token": make it and keep it in the session to be shown once."""
    created = act(
        create_token, engine(), user.username, user.username, timedelta(days=days), name.strip()
    )
    if created is not None:
        st.session_state[NEW_TOKEN] = created[0]


def _revoke(token_id: int, label: str) -> None:
    """on_click of the revocation's confirmation."""
    if act(revoke_token, engine(), user.username, token_id) is not None:
        st.session_state["flash"] = ("ok", f"Token {label} revoked.")


def _label(token: TokenInfo) -> str:
    """`laptop · q2c_pat_AbC… · created 2026-12-04 18:40 UTC`: a token as its owner knows it."""
    name = token.name or "(no name)"
    return f"{name} · {token.prefix}… · created {moment_text(token.created_at)}"


@st.dialog("Revoke a token")
def confirm_revoke(token_id: int, label: str) -> None:
    st.write(
        f"Revoke **{label}**? Whatever uses it is refused from now on, and the tokens made "
        "with it are revoked too. This cannot be undone."
    )
    if st.button(
        "Revoke", type="primary", key="confirm_revoke", on_click=_revoke, args=(token_id, label)
    ):
        st.rerun()


if token := st.session_state.get(NEW_TOKEN):
    st.success("Your new token. Copy it now: it is shown only this once.")
    st.code(token, language=None)
    st.button(
        "I have copied it",
        key="dismiss_token",
        on_click=lambda: st.session_state.pop(NEW_TOKEN, None),
    )

with st.form("create_token", clear_on_submit=True):
    st.markdown("**Create a token**")
    left, right = st.columns([3, 1])
    name = left.text_input("What it is for", max_chars=100, placeholder="laptop, runbook script")
    lifetime = right.selectbox("Expires after", list(LIFETIMES), index=2)
    submitted = st.form_submit_button("Create token", type="primary")
if submitted:
    _create(name, LIFETIMES[lifetime])
    st.rerun()

tokens = load(list_tokens, engine(), user.username)
if not tokens:
    st.info("You have no tokens yet.")
else:
    rows = pd.DataFrame(
        [
            {
                "id": t.id,
                "name": t.name,
                "token": t.prefix + "…",
                "created": moment_text(t.created_at),
                "expires": moment_text(t.expires_at),
                "last used": moment_text(t.last_used_at) if t.last_used_at else "never",
                "state": "revoked" if t.revoked_at else "active",
            }
            for t in tokens
        ]
    )
    st.dataframe(rows, hide_index=True)
    active = {t.id: _label(t) for t in tokens if t.revoked_at is None}
    if active:
        chosen = st.selectbox(
            "Token to revoke", list(active), format_func=active.get, key="revoke_id"
        )
        if st.button("Revoke…", key="revoke_token"):
            confirm_revoke(chosen, active[chosen])

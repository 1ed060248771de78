"""Sign-in and per-page role checks. Hiding a page is convenience; every page and every
command checks the user's current role in the database again."""

from __future__ import annotations

import streamlit as st

from console._resources import engine, load
from q2c.errors import Q2CError
from queries.roles import allows, require
from queries.users import User, acting_user, authenticate

SESSION_KEY = "user"


def current_user() -> User | None:
    """The signed-in user of this browser session, if any."""
    return st.session_state.get(SESSION_KEY)


def sign_in_form() -> None:
    """Username and password form (and single sign-on when configured)."""
    st.title("Q2C Console")
    st.caption("Quote-to-cash observability and exception management")
    with st.form("sign_in"):
        username = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        user = load(authenticate, engine(), username.strip(), password)
        if user is None:
            st.error("Unknown user or wrong password.")
        else:
            st.session_state[SESSION_KEY] = user
            st.rerun()
    if _sso_configured():
        st.button("Sign in with single sign-on", on_click=st.login)
        if getattr(st.user, "is_logged_in", False):
            _adopt_sso_user()


def _sso_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _adopt_sso_user() -> None:
    """Map an OpenID Connect identity onto a Q2C user by e-mail."""
    from sqlalchemy import text

    email = st.user.get("email")
    with engine().connect() as conn:
        username = conn.execute(
            text("SELECT username FROM users WHERE lower(email) = lower(:e) AND NOT disabled"),
            {"e": email},
        ).scalar_one_or_none()
    if username is None:
        st.error(f"{email} is not a Q2C user; ask an admin to add you.")
        return
    st.session_state[SESSION_KEY] = load(_lookup, username)
    st.rerun()


def _lookup(username: str) -> User:
    with engine().connect() as conn:
        return acting_user(conn, username)


def sign_out() -> None:
    """Forget the session's user."""
    st.session_state.pop(SESSION_KEY, None)


def page_user(permission: str) -> User:
    """The signed-in user, re-read from the database, if allowed `permission`; otherwise
    the page shows why and stops."""
    user = current_user()
    if user is None:
        st.warning("Please sign in.")
        st.stop()
    fresh = load(_lookup, user.username)
    try:
        require(fresh.username, fresh.role, permission)
    except Q2CError as exc:
        st.error(str(exc))
        st.stop()
    st.session_state[SESSION_KEY] = fresh
    return fresh


def can(user: User, permission: str) -> bool:
    """Whether the user's role holds `permission` (for showing or hiding controls)."""
    return allows(user.role, permission)

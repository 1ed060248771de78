"""Sign-in and per-page role checks. Hiding a page is convenience; every page and every
command checks the user's current role in the database again."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from console._resources import engine, load, settings
from q2c.errors import Q2CError, first_line
from queries.roles import UnknownUser, allows, require
from queries.sessions import close_session, open_session, resume_session
from queries.sign_in import sign_in, sso_sign_in
from queries.users import User, lookup_user

SESSION_KEY = "user"
NOT_DONE_KEY = "action_not_done"  # an action refused because the sign-in had ended
T = TypeVar("T")


def current_user() -> User | None:
    """The signed-in user of this browser session, if any."""
    return st.session_state.get(SESSION_KEY)


def refreshed_user() -> User | None:
    """The signed-in user as the database holds them now, so that navigation follows a
    role change at once. A sign-in that has ended since (signed out in another tab,
    expired, or ended by an admin changing the account) is signed out here too, and the
    user told. A new browser session (a reload, a new tab) resumes the sign-in its cookie
    holds."""
    _write_cookie()
    user = current_user() or _resumed_user()
    if user is None:
        return None
    try:
        fresh = _signed_in_as_now(user)
    except SQLAlchemyError:
        return user  # the page says what is wrong when it reads; navigation stays as it was
    if fresh is None:
        not_done = st.session_state.pop(NOT_DONE_KEY, False)
        # Ended elsewhere: nothing to close. The cookie stays as it is: it may hold a
        # newer sign-in made in another tab since.
        _forget()
        st.warning(_ended(user) + (" What you last clicked was not done." if not_done else ""))
        _end_single_sign_on()
        return None
    st.session_state[SESSION_KEY] = fresh
    return fresh


def _signed_in_as_now(user: User) -> User | None:
    """`user` as the database holds them now if this tab's sign-in still holds."""
    return _still_signed_in(user, st.session_state.get(TOKEN_KEY))


def _still_signed_in(user: User, token: str | None) -> User | None:
    """`user` as the database holds them now if their sign-in still holds: the account
    enabled and, for a sign-in with a session (`token`), that session open, unexpired and
    of the user's current role."""
    if token:
        return resume_session(engine(), token)
    try:
        return lookup_user(engine(), user.username)
    except UnknownUser:
        return None


def sign_in_guard() -> Callable[[], None]:
    """For work done later, off the page (a download made when its button is clicked, on
    a thread of its own): a check that this tab's sign-in still holds then, raising
    Q2CError once it has ended."""
    user, token = current_user(), st.session_state.get(TOKEN_KEY)

    def check() -> None:
        if user is None or _still_signed_in(user, token) is None:
            raise Q2CError("the sign-in has ended: sign in again")

    return check


def _sign_in_ended() -> bool:
    """Whether this tab has no sign-in, or one that has ended since it was made."""
    user = current_user()
    return user is None or _signed_in_as_now(user) is None


def recheck_sign_in() -> None:
    """At the top of a section that reruns on its own (a fragment): once the sign-in has
    ended, rerun the whole page, which signs the tab out and says why."""
    try:
        ended = _sign_in_ended()
    except SQLAlchemyError:
        return  # the section says what is wrong when it reads
    if ended:
        st.rerun(scope="app")


def _ended(user: User) -> str:
    """Why `user`'s sign-in ended, as far as the database tells."""
    try:
        lookup_user(engine(), user.username)
    except UnknownUser:
        return f"{user.username} can no longer sign in: the account was disabled or removed."
    except SQLAlchemyError:
        pass
    return (
        f"The sign-in of {user.username} has ended: signed out in another tab, expired, or "
        "ended by an admin (a new role or password). Please sign in again."
    )


def act(command: Callable[..., T], *args: object) -> T | None:
    """Run a command for the signed-in user, unless their sign-in has ended meanwhile (the
    page then signs them out and says so); a refusal or failure becomes a message."""
    if current_user() is None:
        return None
    try:
        if _sign_in_ended():
            st.session_state[NOT_DONE_KEY] = True
            return None
        return command(*args)
    except Q2CError as exc:
        st.session_state["flash"] = ("error", str(exc))
    except SQLAlchemyError as exc:
        st.session_state["flash"] = ("error", f"Could not save: {first_line(exc)}")
    return None


DESTINATION_KEY = "destination"


def remember_destination() -> None:
    """Note where a signed-out visitor was going (the page's address and its query), so
    that signing in leads there rather than to the overview."""
    url = st.context.url
    if not isinstance(url, str):  # (AppTest gives no real address)
        return
    path = urlsplit(url).path.strip("/")
    if path and DESTINATION_KEY not in st.session_state:
        query = {key: st.query_params.get_all(key) for key in st.query_params}  # repeats too
        st.session_state[DESTINATION_KEY] = (path, query)


def go_to_destination(pages: list[st.Page]) -> None:
    """After sign-in, open the page a visitor was going to (once), with its query."""
    destination = st.session_state.pop(DESTINATION_KEY, None)
    if destination is None:
        return
    path, query = destination
    for page in pages:
        if page.url_path == path:
            # This run's output, the session cookie's script among it, is dropped by the
            # switch: the destination's run writes the cookie again.
            if token := st.session_state.get(TOKEN_KEY):
                st.session_state[COOKIE_KEY] = token
            st.switch_page(page, query_params=query)


def sign_in_form() -> None:
    """Username and password form (and single sign-on when configured)."""
    st.title("Q2C Console")
    st.caption("Quote-to-cash observability and exception management")
    with st.form("sign_in"):
        username = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        outcome = load(sign_in, engine(), username.strip(), password, _client_address())
        if outcome.retry_after is not None:
            minutes = max(1, math.ceil(outcome.retry_after.total_seconds() / 60))
            st.error(f"Too many failed sign-ins. Try again in {minutes} minute(s).")
        elif outcome.user is None:
            st.error("Unknown user or wrong password.")
        else:
            _open_session(outcome.user)
            st.rerun()
    if _sso_configured():
        st.button("Sign in with single sign-on", on_click=st.login)
        if getattr(st.user, "is_logged_in", False):
            _adopt_sso_user()


def _client_address() -> str | None:
    """The browser's address: as the server sees it, or, behind a proxy, the last address
    the proxy added to Q2C_CLIENT_ADDRESS_HEADER (earlier ones are the client's to forge);
    None when unknown: under AppTest, and for a browser on this machine, which must not
    share one sign-in limit with every other unknown client."""
    header = settings().client_address_header
    if header:
        forwarded = st.context.headers.get(header)
        address = forwarded.split(",")[-1].strip() if isinstance(forwarded, str) else None
    else:
        address = st.context.ip_address  # None for a loopback connection (Streamlit's)
    return address if isinstance(address, str) and address else None


def _sso_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _adopt_sso_user() -> None:
    """Map an OpenID Connect identity onto a Q2C user by e-mail."""
    email = st.user.get("email")
    user = load(sso_sign_in, engine(), str(email or ""), _client_address())
    if user is None:
        st.error(f"{email} is not a Q2C user; ask an admin to add you.")
        return
    _open_session(user)
    st.rerun()


def sign_out() -> None:
    """Forget the session's user, and close their sign-in for every tab."""
    token = _forget()
    if token:
        # Database unreachable now: the session still ends when it expires.
        with contextlib.suppress(SQLAlchemyError):
            close_session(engine(), token, _client_address())
    st.session_state[COOKIE_KEY] = None  # the browser forgets it on the next run
    _end_single_sign_on()


def _forget() -> str | None:
    """Forget this tab's user; the token of its session, if it had one."""
    st.session_state.pop(SESSION_KEY, None)
    token: str | None = st.session_state.pop(TOKEN_KEY, None)
    return token


def _end_single_sign_on() -> None:
    """Signed in by single sign-on: end that too, or the sign-in form would take the
    identity again at once (each tab keeps its own `st.user` until `st.logout`)."""
    if _sso_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


COOKIE = "q2c_session"
TOKEN_KEY, COOKIE_KEY = "session_token", "cookie_to_write"


def _open_session(user: User) -> None:
    """Sign `user` in here, and open a session their other tabs and reloads resume."""
    st.session_state[SESSION_KEY] = user
    try:
        token = open_session(
            engine(), user, timedelta(hours=settings().session_hours), _client_address()
        )
    except SQLAlchemyError:
        return  # signed in for this tab only
    st.session_state[TOKEN_KEY] = token
    st.session_state[COOKIE_KEY] = token  # written on the next run (this one reruns)


def _resumed_user() -> User | None:
    """The user of the session the browser's cookie names, if it is still good."""
    token = st.context.cookies.get(COOKIE)
    if not isinstance(token, str) or not token:  # (AppTest gives no real cookies)
        return None
    try:
        user = resume_session(engine(), token)
    except SQLAlchemyError:
        return None
    if user is not None:
        st.session_state[SESSION_KEY] = user
        st.session_state[TOKEN_KEY] = token
    return user


def _write_cookie() -> None:
    """Hand the browser the session cookie to keep (or to drop, after sign-out), once."""
    if COOKIE_KEY not in st.session_state:
        return
    token = st.session_state.pop(COOKIE_KEY)
    age = settings().session_hours * 3600 if token else 0
    value = json.dumps(f"{COOKIE}={token or ''}; Path=/; Max-Age={age}; SameSite=Strict")
    st.html(
        "<script>document.cookie = "
        f"{value} + (location.protocol === 'https:' ? '; Secure' : '');</script>",
        unsafe_allow_javascript=True,
    )


def page_user(permission: str) -> User:
    """The signed-in user, re-read from the database, if allowed `permission`; otherwise
    the page shows why and stops."""
    user = current_user()
    if user is None:
        st.warning("Please sign in.")
        st.stop()
    fresh = load(lookup_user, engine(), user.username)
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

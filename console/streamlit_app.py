"""Entry point of the Q2C console: sign-in, then the pages the user's role may open."""

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from console._auth import (
    can,
    go_to_destination,
    refreshed_user,
    remember_destination,
    sign_in_form,
    sign_out,
)
from queries.roles import PermissionDenied, require

PAGES = Path(__file__).resolve().parent / "app_pages"
# Served by the console itself: a Material icon here makes browsers fetch it from Google.
ICON = Path(__file__).resolve().parent / "assets" / "icon.png"

st.set_page_config(page_title="Q2C Console", page_icon=str(ICON), layout="wide")
# A tile's value wraps rather than being cut to "INV-2026-…": an invoice number or an
# amount is read whole or not at all.
st.markdown(
    "<style>[data-testid='stMetricValue'], [data-testid='stMetricValue'] * "
    "{white-space: normal !important; overflow: visible !important; "
    "text-overflow: clip !important; overflow-wrap: anywhere; font-size: 1.75rem;}</style>",
    unsafe_allow_html=True,
)

# (file, title, icon, permission) — the pages check the permission again themselves.
CATALOG = (
    ("overview.py", "Overview", ":material/dashboard:", "dashboards.view"),
    ("stages.py", "Quote-to-cash stages", ":material/account_tree:", "dashboards.view"),
    ("exceptions.py", "Exceptions", ":material/report:", "exceptions.view"),
    ("dead_letters.py", "Dead letters & replays", ":material/replay:", "dead_letters.view"),
    ("explorer.py", "Trace explorer", ":material/travel_explore:", "transactions.view"),
    ("admin.py", "Users & policies", ":material/admin_panel_settings:", "users.manage"),
    ("audit.py", "Audit log", ":material/history:", "audit.view"),
    ("alerts.py", "Alerts", ":material/notifications:", "alerts.view"),
    ("reconciliation.py", "Reconciliation", ":material/balance:", "reconciliation.view"),
)
ACCOUNT = (("tokens.py", "API tokens", ":material/key:", "dashboards.view"),)


def _sign_in_at(file: str) -> st.Page:
    """The sign-in form, at a page's address (which a pasted link keeps)."""

    def page() -> None:
        sign_in_form()

    page.__name__ = f"sign_in_{Path(file).stem}"  # a distinct page for Streamlit
    return st.Page(page, title="Sign in", url_path=Path(file).stem, default=file == "overview.py")


user = refreshed_user()
if user is None:
    remember_destination()  # a pasted link leads there once signed in
    # A menu of its own, hidden: the one of a sign-in just ended (signed out in another
    # tab, expired) would otherwise stay on screen beside the form.
    st.navigation([_sign_in_at(file) for file, *_ in CATALOG + ACCOUNT], position="hidden").run()
    st.stop()


def _refusal(title: str, permission: str) -> Callable[[], None]:
    """A page the user's role may not open: it says which role it needs."""

    def page() -> None:
        st.title(title)
        try:
            require(user.username, user.role, permission)
        except PermissionDenied as refused:
            st.error(f"You cannot open this page: {refused}.")

    page.__name__ = f"refused_{title}"  # a distinct page for Streamlit
    return page


def _pages(catalog: tuple[tuple[str, str, str, str], ...]) -> list[st.Page]:
    """The pages the user's role opens, and, hidden from the menu but at the same
    addresses, the others, which say why they refuse."""
    return [
        st.Page(PAGES / file, title=title, icon=icon, default=(file == "overview.py"))
        if can(user, permission)
        else st.Page(
            _refusal(title, permission),
            title=title,
            url_path=Path(file).stem,
            visibility="hidden",
        )
        for file, title, icon, permission in catalog
    ]


pages = {"": _pages(CATALOG), "Your account": _pages(ACCOUNT)}
with st.sidebar:
    st.markdown(f"**{user.display_name or user.username}** · {user.role.replace('_', ' ')}")
    st.button("Sign out", on_click=sign_out, key="sign_out")
navigation = st.navigation(pages)
go_to_destination([page for section in pages.values() for page in section])
navigation.run()

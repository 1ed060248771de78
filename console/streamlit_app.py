"""Entry point of the Q2C console: sign-in, then the pages the user's role may open."""

from pathlib import Path

import streamlit as st

from console._auth import can, current_user, sign_in_form, sign_out

PAGES = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="Q2C Console", page_icon=":material/monitoring:", layout="wide")

# (file, title, icon, permission) — the pages check the permission again themselves.
CATALOG = (
    ("overview.py", "Overview", ":material/dashboard:", "dashboards.view"),
    ("stages.py", "Quote-to-cash stages", ":material/account_tree:", "dashboards.view"),
    ("exceptions.py", "Exceptions", ":material/report:", "exceptions.view"),
    ("dead_letters.py", "Dead letters & replays", ":material/replay:", "dead_letters.view"),
    ("explorer.py", "Trace explorer", ":material/travel_explore:", "exceptions.view"),
    ("admin.py", "Users & policies", ":material/admin_panel_settings:", "users.manage"),
)

user = current_user()
if user is None:
    sign_in_form()
    st.stop()

pages = [
    st.Page(PAGES / file, title=title, icon=icon, default=(file == "overview.py"))
    for file, title, icon, permission in CATALOG
    if can(user, permission)
]
with st.sidebar:
    st.markdown(f"**{user.display_name or user.username}** · {user.role.replace('_', ' ')}")
    st.button("Sign out", on_click=sign_out, key="sign_out")
st.navigation(pages).run()

"""Entry point of the Q2C console: builds the navigation and runs the chosen page."""

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "app_pages"

st.set_page_config(page_title="Q2C Console", page_icon=":material/monitoring:", layout="wide")

navigation = st.navigation(
    [st.Page(PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True)]
)
navigation.run()

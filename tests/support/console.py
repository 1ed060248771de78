"""The console as tests drive it: its entry point and one demo login per role."""

from __future__ import annotations

from pathlib import Path

from demo.seed import DEMO_USERS

APP = Path(__file__).resolve().parents[2] / "console" / "streamlit_app.py"
LOGINS = {role: (user, password) for user, role, password in DEMO_USERS}

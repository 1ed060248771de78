"""Console fixtures: an AppTest of the whole app against a chosen database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "console" / "streamlit_app.py"


@pytest.fixture
def console_app(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], AppTest]:
    """Run the console app once against `database_url` and return the AppTest."""

    def run(database_url: str) -> AppTest:
        monkeypatch.setenv("DATABASE_URL", database_url)
        st.cache_resource.clear()
        st.cache_data.clear()
        return AppTest.from_file(str(APP), default_timeout=30).run()

    return run

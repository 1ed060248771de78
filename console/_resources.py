"""Process-wide resources of the console (settings, engine) and safe data loading for pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from q2c.database import create_db_engine
from q2c.errors import Q2CError
from q2c.settings import Settings, load_settings

T = TypeVar("T")


@st.cache_resource
def settings() -> Settings:
    """The console's settings, read once per process."""
    return load_settings()


@st.cache_resource
def engine() -> Engine:
    """One pooled engine shared by every session of this console process."""
    current = settings()
    if current.database_url is None:
        raise Q2CError("no DATABASE_URL: start the console with `q2c console` or `make demo`")
    return create_db_engine(current.database_url.get_secret_value(), current)


def load(reader: Callable[..., T], *args: object) -> T:
    """Run a reader; on failure show what is wrong and stop the page, never a traceback."""
    try:
        return reader(*args)
    except Q2CError as exc:
        st.error(str(exc))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        st.error(f"The database is not reachable right now ({reason}). Retrying shortly.")
    st.stop()
    raise AssertionError("st.stop() returned")  # pragma: no cover

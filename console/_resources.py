"""Process-wide resources of the console (settings, engine, policy) and safe data loading."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from q2c.database import create_db_engine
from q2c.errors import Q2CError, first_line
from q2c.privileges import warn_if_privileged
from q2c.settings import Settings, load_settings
from q2c.urls import libpq_url
from sla.policy import Policy, load_policy

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
    url = libpq_url(current.database_url.get_secret_value())
    warn_if_privileged(url)
    return create_db_engine(url, current)


@st.cache_resource
def policy() -> Policy:
    """The process catalog and SLA policies (sla.yaml)."""
    return load_policy(settings().sla_config)


def load(reader: Callable[..., T], *args: object) -> T:
    """Run a reader; on failure show what is wrong and stop the page, never a traceback."""
    try:
        return reader(*args)
    except Q2CError as exc:
        st.error(str(exc))
    except OperationalError as exc:
        st.error(f"The database is not reachable right now ({first_line(exc)}). Retrying shortly.")
    except SQLAlchemyError as exc:
        st.error(f"Could not load this data ({first_line(exc)}).")
    st.stop()
    raise AssertionError("st.stop() returned")  # pragma: no cover


SHOWN_FLASH_KEY = "flash_shown"


def show_flash() -> None:
    """Show (once) the message the last action left, in a slot of its own that is there on
    every run: else the run after an action, whose message is gone, moves every element
    below up one, and Streamlit draws them anew (an open expander closing under the
    person typing into it)."""
    flash = st.session_state.pop("flash", None)
    st.session_state[SHOWN_FLASH_KEY] = flash
    with st.container():
        if flash:
            kind, message = flash
            (st.error if kind == "error" else st.success)(message)


def rerun_for_news() -> None:
    """Rerun the whole page for what changed in the background, the last action's message
    still shown (a rerun would otherwise take it away before it is read)."""
    st.session_state["flash"] = st.session_state.get(SHOWN_FLASH_KEY)
    st.rerun()

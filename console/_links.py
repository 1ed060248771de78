"""Addresses that can be pasted into a ticket: the object a page shows (`?id=N`) and the
filters it applies (`?status=open&status=assigned&process=order_to_cash`), read when the
page opens and written back as they change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import streamlit as st


@dataclass(frozen=True)
class Linked:
    """A widget whose value the address carries: `param` in the link, `key` in the session.
    A tuple default makes it a multi-valued parameter (repeated in the link); `choices`,
    when given, are the only values a link may set (anything else is ignored)."""

    key: str
    param: str
    default: str | tuple[str, ...] = ""
    choices: Sequence[str] | None = None


def linked_id(name: str = "id") -> int | None:
    """The object a pasted link names (`?id=N`), or None when it names none or no number."""
    value = st.query_params.get(name)
    return int(value) if value is not None and value.isdigit() else None


def seed_from_link(fields: Sequence[Linked]) -> None:
    """Before the widgets are drawn: each one not yet in the session starts from the link,
    else from its default (so no widget is given both a default and a session value)."""
    for field in fields:
        if field.key in st.session_state:
            continue
        if isinstance(field.default, tuple):
            values = st.query_params.get_all(field.param)
            allowed = tuple(v for v in values if field.choices is None or v in field.choices)
            # An empty value says "any" (write_link's); values none of which may be held
            # (a mistyped link) say nothing: the default.
            chosen = values == [""] or bool(allowed)
            st.session_state[field.key] = list(allowed if chosen else field.default)
        else:
            value = st.query_params.get(field.param)
            valid = value is not None and (field.choices is None or value in field.choices)
            st.session_state[field.key] = value if valid else field.default


def held(key: str) -> Any:
    """What a linked widget holds now, to give it as its default as well: should a rerun
    race the browser's first drawing of the widget, the browser draws this value, not the
    widget's built-in default (and then sends that back as the user's choice)."""
    return st.session_state[key]


def held_index(field: Linked) -> int:
    """`held` for a selectbox over `field.choices`: the position of what it holds."""
    assert field.choices is not None  # a selectbox's link takes only its choices
    return list(field.choices).index(held(field.key))


def write_link(fields: Sequence[Linked]) -> None:
    """After the widgets: the address says what differs from the defaults, nothing more."""
    for field in fields:
        value = st.session_state.get(field.key, field.default)
        if isinstance(field.default, tuple):
            value = tuple(value)
        if value == field.default:
            if field.param in st.query_params:
                del st.query_params[field.param]
        elif isinstance(value, tuple):  # none chosen ("any") is said too: an empty value
            st.query_params[field.param] = list(value) or [""]
        else:
            st.query_params[field.param] = str(value)


def query_string(exclude: Sequence[str] = ("id",)) -> str:
    """What the current address says (but `exclude`), as a query string."""
    return urlencode(
        [
            (name, value)
            for name in st.query_params
            if name not in exclude
            for value in st.query_params.get_all(name)
        ]
    )


def address(page: str, exclude: Sequence[str] = ("id",), **extra: object) -> str:
    """The address of `page` with what the current one says (but `exclude`), and `extra`:
    `address("exceptions", id=7)` is the link of exception 7 within the filters in force."""
    query = "&".join(
        part for part in (query_string((*exclude, *extra)), urlencode(list(extra.items()))) if part
    )
    return f"/{page}?{query}" if query else f"/{page}"

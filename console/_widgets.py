"""Widgets shared by pages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pandas as pd
import streamlit as st


def selectable_table(
    frame: pd.DataFrame, columns: list[str], key: str, column_config: dict | None = None
) -> list[int]:
    """Show `columns` of `frame` with a tick box per row; returns the ids of every ticked
    row, in the order they were ticked, including rows the table no longer shows. Only
    the tick boxes are editable.

    Ticks are kept by row id in the session, not by the editor, whose edits are by row
    position: live data adds, removes and reorders rows, and a tick must neither vanish
    nor move to another row. An editor shows its rows with the ticks they had when it was
    made (its base), and keeps the person's ticks since as its edits, which are read into
    the ticks at each run. A new editor is made only when the rows change or ticks are
    taken away (untick): one made at each tick would lose the next tick, made on the
    editor it replaced, and an editor handed new data resets its edits and reruns the
    page, closing any dialog just opened. Each new editor has a name never used before:
    one that took an earlier editor's name would take its edits too (ticks already acted
    on, back again)."""
    store, base_store = f"{key}:ticked", f"{key}:base"
    ticked: list[int] = list(st.session_state.get(store, []))
    ids = [int(i) for i in frame["id"]]
    reset = st.session_state.pop(f"{key}:reset", False)
    base: _Base | None = st.session_state.get(base_store)
    if base is not None and not reset:
        for i, tick in _edited_ticks(key, base).items():
            if not tick and i in ticked:
                ticked.remove(i)
            elif tick and i not in ticked:
                ticked.append(i)
    if base is None or base.ids != ids or reset:
        generation = 0 if base is None else base.generation + 1
        base = _Base(generation, ids, [i in ticked for i in ids])
        st.session_state[base_store] = base
    table = frame[columns].copy()
    table.insert(0, "select", base.ticks)
    with st.container(key=key):  # one stable name for the table, whichever rows it shows
        st.data_editor(
            table,
            hide_index=True,
            key=_editor_key(key, base),
            disabled=columns,
            column_config={
                "select": st.column_config.CheckboxColumn("✓"),
                **(column_config or {}),
            },
        )
    st.session_state[store] = ticked
    return ticked


class _Base(NamedTuple):
    """What an editor of `selectable_table` was made from."""

    generation: int  # the editors of a table so far: each has its own name
    ids: list[int]  # its rows' ids, in order
    ticks: list[bool]  # its rows' ticks when it was made


def _editor_key(key: str, base: _Base) -> str:
    return f"{key}:{base.generation}"


def _edited_ticks(key: str, base: _Base) -> dict[int, bool]:
    """The ticks the person changed on the editor made from `base`: row id → ticked."""
    state = st.session_state.get(_editor_key(key, base))
    edited = state.get("edited_rows", {}) if isinstance(state, dict) else {}
    return {
        base.ids[int(row)]: bool(change["select"])
        for row, change in edited.items()
        if "select" in change and 0 <= int(row) < len(base.ids)
    }


def untick(key: str, ids: Iterable[int]) -> None:
    """Forget the ticks of `ids` in `selectable_table` `key` (after acting on them)."""
    store = f"{key}:ticked"
    done = set(ids)
    st.session_state[store] = [i for i in st.session_state.get(store, []) if i not in done]
    st.session_state[f"{key}:reset"] = True  # the editor shown still has them ticked


def money_text(amounts: dict[str, float]) -> str:
    """Totals per currency as one line ("EUR 1,200.00 · USD 80.50"), never added up."""
    return " · ".join(
        f"{currency or '(no currency)'} {total:,.2f}" for currency, total in sorted(amounts.items())
    )


def history_event(event: dict) -> None:
    """One entry of an audit history: who did what, when (UTC), what they wrote, and what
    changed. The text people wrote is shown as plain text, never as Markdown."""
    when = moment_text(event["at"], seconds=True)
    st.markdown(f"**{event['actor']}** {event['action'].replace('_', ' ')} · {when}")
    if event.get("comment"):
        st.text(event["comment"])
    changes = [
        f"{key}: {(event['before'] or {}).get(key) or '—'} → {value or '—'}"
        for key, value in (event["after"] or {}).items()
    ]
    if changes:
        st.caption("; ".join(changes))


# What Markdown (and Streamlit's :color[…] and $math$) reads in a line of text, each of
# which a backslash turns back into itself: an underscore only where it can start or end
# emphasis (`invoice_posting` is left as it is), a colon, point or dash nowhere (they mean
# something only around the brackets and at the start of a line, which are escaped).
_MARKDOWN = re.compile(r"([\\`*\[\]<>!$~|#{}])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def plain(value: object) -> str:
    """`value` as literal text inside Markdown, on one line: what telemetry, a source of
    record or a person wrote is shown, never read as a link, an image or a heading."""
    return _MARKDOWN.sub(lambda m: "\\" + m[0], " ".join(str(value).split()))


def amount_text(amount: float | None, currency: str | None) -> str:
    """An amount with its currency first, so that a narrow tile never loses it."""
    if amount is None:
        return "—"
    return f"{currency} {amount:,.2f}" if currency else f"{amount:,.2f}"


def age_text(age: timedelta) -> str:
    """An age in hours up to two days, in days beyond."""
    hours = max(age.total_seconds(), 0) / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def moment_text(moment: datetime | None, seconds: bool = False) -> str:
    """A time to the minute (or the second), in UTC."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime(f"%Y-%m-%d %H:%M{':%S' if seconds else ''} UTC")


def readable(rows: pd.DataFrame | list[dict], seconds: bool = True) -> pd.DataFrame:
    """A table as people read it: times in UTC to the second (`moment_text`), nothing
    where a value is missing (never "None"), a structured value as `key: value` pairs (not
    JSON)."""
    frame = pd.DataFrame(rows).copy()
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            frame[column] = [
                "" if pd.isna(v) else moment_text(v.to_pydatetime(), seconds) for v in values
            ]
        elif values.dtype == object or pd.api.types.is_string_dtype(values):  # (pandas 3: str)
            frame[column] = [_cell_text(v, seconds) for v in values]
        elif pd.api.types.is_numeric_dtype(values) and values.isna().any():
            # A missing number (an HTTP code not yet known) makes the column float: shown
            # as text, blank where missing, whole numbers without ".0".
            frame[column] = [
                "" if pd.isna(v) else str(int(v)) if float(v).is_integer() else str(v)
                for v in values
            ]
    return frame


def _cell_text(value: object, seconds: bool) -> object:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell_text(v, seconds)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(_cell_text(v, seconds)) for v in value)
    if pd.api.types.is_scalar(value) and pd.isna(value):  # None, NaN, NaT, NA
        return ""
    if isinstance(value, datetime):
        return moment_text(value, seconds)
    return value


def duration_text(ms: float | None) -> str:
    """A duration in minutes from one minute up, in seconds below."""
    return "—" if ms is None else (f"{ms / 60000:.1f} min" if ms >= 60000 else f"{ms / 1000:.1f} s")


def delta_text(now: float | None, before: float | None, unit: str = "") -> str | None:
    """The change since the previous window, as the tile's value is rounded; None when
    either is unknown or the change rounds to nothing (never "-0.0")."""
    if now is None or before is None or round(now - before, 1) == 0:
        return None
    return f"{now - before:+.1f}{unit}"


def duration_delta(now_ms: float | None, before_ms: float | None) -> str | None:
    """A latency's change in the unit its tile shows (`duration_text`): minutes or seconds."""
    if now_ms is None or before_ms is None:
        return None
    if now_ms >= 60000:
        return delta_text(now_ms / 60000, before_ms / 60000, " min")
    return delta_text(now_ms / 1000, before_ms / 1000, " s")

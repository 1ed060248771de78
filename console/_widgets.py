"""Widgets shared by pages."""

from __future__ import annotations

import pandas as pd
import streamlit as st


def selectable_table(frame: pd.DataFrame, columns: list[str], key: str,
                     column_config: dict | None = None) -> list[int]:  # fmt: skip
    """Show `columns` of `frame` with a tick box per row; returns the ticked rows' ids.
    Only the tick boxes are editable."""
    table = frame[columns].copy()
    table.insert(0, "select", False)
    edited = st.data_editor(
        table,
        hide_index=True,
        key=key,
        disabled=columns,
        column_config={"select": st.column_config.CheckboxColumn("✓"), **(column_config or {})},
    )
    return [int(i) for i in edited.loc[edited["select"], "id"]]

"""The trace explorer's waterfall, laid out: a transaction's spans in tree order (each
span under its parent, siblings by start), on an axis relative to the transaction's start
where long idle gaps between asynchronous hops are drawn narrow and labelled with their
length, so that a millisecond call and a three-hour wait for a batch both stay readable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

# A gap is compressed when it is longer than this share of the time the spans are busy
# (and than MIN_COMPRESSED_S); it is then drawn as GAP_SHARE of the busy time.
COMPRESS_OVER = 0.5
MIN_COMPRESSED_S = 1.0
GAP_SHARE = 0.06
ERROR = 2  # the OTLP status code of a failed span
INDENT = "    "


@dataclass(frozen=True)
class Bar:
    """One span as drawn: its row (tree order), depth, place on the drawn axis, and its
    real offset from the transaction's start and duration, in seconds."""

    span: Mapping[str, Any]
    depth: int
    drawn_start: float
    drawn_width: float
    offset_s: float
    duration_s: float


@dataclass(frozen=True)
class Gap:
    """An idle stretch drawn narrow: where it starts on the drawn axis, its drawn width
    and its real length in seconds."""

    drawn_start: float
    drawn_width: float
    real_s: float


@dataclass(frozen=True)
class Waterfall:
    bars: list[Bar]
    gaps: list[Gap]
    ticks: list[tuple[float, str]]  # drawn position, real offset written


def length_text(seconds: float) -> str:
    """A span's or a gap's length as people read it: 840 µs, 12 ms, 3.4 s, 5 min 12 s,
    3 h 05 min, 2 d 4 h."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def _since(offset_s: float) -> str:
    return f"+{length_text(offset_s)}" if offset_s > 0 else "0"


def tree_order(spans: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], int]]:
    """Each span with its depth, every span right under its parent, siblings (and the
    roots: spans without a parent, or whose parent was never stored) by start time."""
    by_id = {(s["trace_id"], s["span_id"]): s for s in spans}
    children: dict[tuple[str, str] | None, list[Mapping[str, Any]]] = {}
    for span in spans:
        parent = (span["trace_id"], span["parent_span_id"])
        children.setdefault(parent if parent in by_id else None, []).append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: (s["start_time"], s["end_time"]))
    ordered: list[tuple[Mapping[str, Any], int]] = []
    seen: set[tuple[str, str]] = set()
    stack = [(root, 0) for root in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        identity = (span["trace_id"], span["span_id"])
        if identity in seen:  # a duplicate span id: drawn once
            continue
        seen.add(identity)
        ordered.append((span, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(identity, [])))
    # A cycle of parents (a broken exporter) has no root: its spans are drawn at the top level.
    ordered += [(s, 0) for s in spans if (s["trace_id"], s["span_id"]) not in seen]
    return ordered


def _busy_segments(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of the spans' intervals, as disjoint segments in time order."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def layout(spans: Sequence[Mapping[str, Any]]) -> Waterfall:
    """The waterfall of `spans` (rows with trace_id, span_id, parent_span_id, start_time,
    end_time)."""
    if not spans:
        return Waterfall([], [], [])
    origin: datetime = min(s["start_time"] for s in spans)

    def offset(moment: datetime) -> float:
        return (moment - origin).total_seconds()

    segments = _busy_segments([(offset(s["start_time"]), offset(s["end_time"])) for s in spans])
    busy = sum(end - start for start, end in segments) or 1.0
    drawn_gap = max(busy * GAP_SHARE, 1e-6)
    # Each segment's shift: how much earlier it is drawn than it happened.
    shifts: list[tuple[float, float, float]] = []  # real start, real end, shift
    gaps: list[Gap] = []
    shift = 0.0
    for i, (start, end) in enumerate(segments):
        if i:
            idle = start - segments[i - 1][1]
            if idle > max(COMPRESS_OVER * busy, MIN_COMPRESSED_S):
                gaps.append(Gap(segments[i - 1][1] - shift, drawn_gap, idle))
                shift += idle - drawn_gap
        shifts.append((start, end, shift))

    def drawn(real: float) -> float:
        for start, end, segment_shift in shifts:
            if start <= real <= end:
                return real - segment_shift
        return real - shift  # not reached: every span lies in a segment

    bars = []
    for span, depth in tree_order(spans):
        start, end = offset(span["start_time"]), offset(span["end_time"])
        bars.append(
            Bar(span, depth, drawn(start), max(drawn(end) - drawn(start), 0.0), start, end - start)
        )
    ticks = [(start - segment_shift, _since(start)) for start, _, segment_shift in shifts]
    last_end = segments[-1][1]
    if _since(last_end) != ticks[-1][1]:  # the end, unless it reads as the last start
        ticks.append((last_end - shift, _since(last_end)))
    return Waterfall(bars, gaps, ticks)


def row_label(bar: Bar) -> str:
    """A bar's row: the span, indented under its parent, with its system."""
    span = bar.span
    return f"{INDENT * bar.depth}{'└ ' if bar.depth else ''}{span['system']} · {span['name']}"


def figure(waterfall: Waterfall) -> go.Figure:
    """The waterfall as a horizontal bar chart: one row per span in tree order, each bar
    its duration (written beside it), compressed gaps shaded and labelled."""
    bars = waterfall.bars
    labels = [f"{i + 1:>3}. {row_label(bar)}" for i, bar in enumerate(bars)]
    chart = go.Figure(
        go.Bar(
            y=labels,
            x=[max(bar.drawn_width, 1e-9) for bar in bars],
            base=[bar.drawn_start for bar in bars],
            orientation="h",
            marker_color=[
                "#c62828" if bar.span["status_code"] == ERROR else "#2e7d32" for bar in bars
            ],
            text=[length_text(bar.duration_s) for bar in bars],
            textposition="outside",
            cliponaxis=False,
            customdata=list(range(len(bars))),
            hovertemplate="%{y}<br>%{text}<extra></extra>",
        )
    )
    for gap in waterfall.gaps:  # shaded across the rows, labelled above them
        chart.add_vrect(
            x0=gap.drawn_start,
            x1=gap.drawn_start + gap.drawn_width,
            fillcolor="#9e9e9e",
            opacity=0.25,
            line_width=0,
        )
        chart.add_annotation(
            x=gap.drawn_start + gap.drawn_width / 2,
            y=1,
            yref="paper",
            yanchor="bottom",
            showarrow=False,
            text=f"⋯ {length_text(gap.real_s)} idle",
            font={"size": 11, "color": "#616161"},
        )
    chart.update_yaxes(
        autorange="reversed", title=None, categoryorder="array", categoryarray=labels
    )
    chart.update_xaxes(
        title="time since the transaction started (long idle gaps compressed)",
        tickvals=[at for at, _ in waterfall.ticks],
        ticktext=[label for _, label in waterfall.ticks],
        showgrid=True,
    )
    chart.update_layout(
        height=120 + 28 * len(bars),
        margin={"l": 10, "r": 80, "t": 40, "b": 40},
        showlegend=False,
        bargap=0.35,
        clickmode="event+select",
    )
    return chart

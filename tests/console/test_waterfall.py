"""The waterfall's layout: tree order, durations, relative axis and compressed gaps."""

from datetime import UTC, datetime, timedelta

import pytest

from console._waterfall import figure, layout, length_text, row_label, tree_order

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _span(span_id: str, parent: str | None, start_s: float, end_s: float, trace: str = "t1"):
    return {
        "trace_id": trace,
        "span_id": span_id,
        "parent_span_id": parent,
        "start_time": T0 + timedelta(seconds=start_s),
        "end_time": T0 + timedelta(seconds=end_s),
        "name": f"op-{span_id}",
        "system": "erp",
        "status_code": 0,
    }


def test_spans_are_listed_under_their_parents_siblings_by_start() -> None:
    spans = [
        _span("c2", "root", 0.5, 0.9),
        _span("root", None, 0.0, 1.0),
        _span("g1", "c1", 0.15, 0.2),
        _span("c1", "root", 0.1, 0.4),
    ]

    order = [(span["span_id"], depth) for span, depth in tree_order(spans)]

    assert order == [("root", 0), ("c1", 1), ("g1", 2), ("c2", 1)]


def test_a_span_whose_parent_was_never_stored_and_a_parent_cycle_are_still_drawn() -> None:
    spans = [
        _span("orphan", "missing", 2.0, 3.0),
        _span("a", "b", 0.0, 1.0),
        _span("b", "a", 0.0, 1.0),
        _span("root", None, 1.0, 1.5),
    ]

    order = [(span["span_id"], depth) for span, depth in tree_order(spans)]

    assert order == [("root", 0), ("orphan", 0), ("a", 0), ("b", 0)]


def test_the_same_span_id_in_another_trace_is_another_span() -> None:
    spans = [
        _span("s", None, 0, 1, "t1"),
        _span("s", None, 2, 3, "t2"),
        _span("k", "s", 2, 2.5, "t2"),
    ]

    order = [(span["trace_id"], span["span_id"], depth) for span, depth in tree_order(spans)]

    assert order == [("t1", "s", 0), ("t2", "s", 0), ("t2", "k", 1)]


def test_bars_are_their_durations_on_an_axis_from_the_transactions_start() -> None:
    waterfall = layout([_span("root", None, 10.0, 12.0), _span("child", "root", 10.5, 11.0)])

    root, child = waterfall.bars
    assert (root.offset_s, root.duration_s, root.drawn_start, root.drawn_width) == (0, 2, 0, 2)
    assert (child.offset_s, child.duration_s, child.depth) == (0.5, 0.5, 1)
    assert waterfall.gaps == []
    assert [label for _, label in waterfall.ticks] == ["0", "+2.0 s"]


def test_a_long_idle_gap_between_hops_is_drawn_narrow_and_labelled() -> None:
    # Order captured, then three hours later the invoice batch picks it up.
    spans = [_span("order", None, 0.0, 2.0), _span("invoice", None, 10_800 + 2.0, 10_800 + 4.0)]

    waterfall = layout(spans)

    [gap] = waterfall.gaps
    assert gap.real_s == pytest.approx(10_800)
    assert gap.drawn_start == pytest.approx(2.0)
    assert gap.drawn_width < 1  # of 4 s busy: narrow, not three hours wide
    _, invoice = waterfall.bars
    assert invoice.offset_s == pytest.approx(10_802)
    assert invoice.drawn_start == pytest.approx(2.0 + gap.drawn_width)
    assert invoice.drawn_width == pytest.approx(2.0)  # a bar keeps its own duration
    assert [label for _, label in waterfall.ticks] == ["0", "+3 h 00 min"]  # end: 2 s later


def test_a_gap_short_against_the_busy_time_is_drawn_to_scale() -> None:
    waterfall = layout([_span("a", None, 0.0, 10.0), _span("b", None, 12.0, 20.0)])

    assert waterfall.gaps == []
    assert waterfall.bars[1].drawn_start == pytest.approx(12.0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.00042, "420 µs"),
        (0.012, "12 ms"),
        (3.44, "3.4 s"),
        (312, "5 min 12 s"),
        (11_100, "3 h 05 min"),
        (187_200, "2 d 4 h"),
    ],
)
def test_lengths_are_written_as_people_read_them(seconds: float, text: str) -> None:
    assert length_text(seconds) == text


def test_the_figure_writes_each_duration_and_indents_children() -> None:
    waterfall = layout([_span("root", None, 0.0, 1.0), _span("child", "root", 0.25, 0.5)])

    bars = figure(waterfall).data[0]

    assert list(bars.text) == ["1.0 s", "250 ms"]
    assert row_label(waterfall.bars[1]).startswith("    └ erp · op-child")
    assert list(bars.y)[1].endswith("└ erp · op-child")

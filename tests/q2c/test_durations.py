"""Durations read as the configuration files write them, and spelled back the same way."""

from __future__ import annotations

from datetime import timedelta

import pytest

from q2c.durations import duration_text, parse_duration


def test_a_duration_is_spelled_as_it_is_written_and_reads_back_the_same() -> None:
    written = ["30s", "90s", "5m", "4h", "36h", "3d"]

    spelled = [duration_text(parse_duration(value)) for value in written]

    assert spelled == written


@pytest.mark.parametrize("written", ["a day", "-5m", "0s", "5 weeks", ""])
def test_what_is_not_a_positive_duration_is_refused_saying_how_to_write_one(written: str) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .* \(use e\.g\. 90s, 15m, 4h, 3d\)"):
        parse_duration(written)


def test_a_stall_message_and_the_cli_spell_a_zero_wait_in_seconds() -> None:
    assert duration_text(timedelta(0)) == "0s"

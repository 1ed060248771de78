"""A stop signal is recorded, never acted on inside the handler, and ends a wait."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from q2c.stop_request import STOP_SIGNALS, StopRequest


@pytest.fixture
def stop() -> Iterator[StopRequest]:
    """A listening StopRequest; the test run's own handlers come back afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        yield StopRequest().listen()
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_without_a_signal_wait_runs_out_and_says_no(stop: StopRequest) -> None:
    assert stop.wait(0.05) is False
    assert not stop.requested


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_stop_signal_ends_the_wait_and_names_itself(stop: StopRequest, signum: int) -> None:
    os.kill(os.getpid(), signum)

    assert stop.wait() is True
    assert stop.signum == signum


def test_the_first_signal_is_the_one_kept(stop: StopRequest) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    stop.wait()
    os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt if not taken

    assert stop.wait(0) is True
    assert stop.signum == signal.SIGTERM

"""A stop request from Ctrl-C or SIGTERM that is safe to receive at any moment.

Python runs a signal handler in the main thread between two bytecodes, possibly while that
thread holds a lock (a thread pool's while it submits a job, an `Event`'s while it waits).
A handler that takes a lock itself, as `Event.set()` or a scheduler's `shutdown()` do, then
waits for its own thread forever. So the handler here only records the signal, and the main
thread looks for it between short sleeps and stops outside the handler.
"""

from __future__ import annotations

import math
import signal
import time
from types import FrameType

POLL_SECONDS = 0.1  # how long a stop request may go unnoticed, in seconds
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Records the first stop signal; `wait()` sleeps until one has arrived or time is up."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def listen(self) -> StopRequest:
        """Take SIGINT and SIGTERM from now on (call from the main thread)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._record)
        return self

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signum is not None

    def wait(self, seconds: float = math.inf) -> bool:
        """Sleep up to `seconds`, ending early on a stop request; True if one has arrived."""
        deadline = time.monotonic() + seconds
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, POLL_SECONDS))
        return self.requested

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        # Only an assignment: no lock, no I/O, nothing that could wait on this thread.
        if self.signum is None:
            self.signum = signum

"""Events at exactly their shares, evenly spread: what the traffic's faults and the systems
of record's drift are drawn with, so that a demo minutes old, and a test, show the stated
rates rather than the noise of a few dozen dice rolls."""

from __future__ import annotations

import random
from collections.abc import Mapping


class EvenShares:
    """Error diffusion from a random phase: after n draws each event has happened within
    one of n * share times; at most one event per draw (the shares add up to less
    than 1)."""

    def __init__(self, shares: Mapping[str, float], rng: random.Random) -> None:
        self.shares = {name: share for name, share in shares.items() if share}
        self.owed = {name: rng.random() for name in self.shares}

    def next(self) -> str | None:
        """The event of the next draw, if any."""
        for name, share in self.shares.items():
            self.owed[name] += share
        due = [name for name, owed in self.owed.items() if owed >= 1]
        if not due:
            return None
        event = max(due, key=lambda name: self.owed[name])
        self.owed[event] -= 1
        return event

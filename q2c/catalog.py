"""The business-process catalog's shape: processes and their stages, in order.

The catalog itself lives in `sla.yaml` (see `sla.policy`); collectors use it to know how
far a transaction got and when it completed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    """One business process and its stages in the order a transaction passes them."""

    name: str
    stages: tuple[str, ...]

    def index(self, stage: str) -> int | None:
        """Position of `stage` in this process (0-based), None if it is not one of ours."""
        try:
            return self.stages.index(stage)
        except ValueError:
            return None


def stage_rows(catalog: tuple[Process, ...]) -> list[tuple[str, str, int, bool]]:
    """(process, stage, index, is_last) for every stage: the catalog as a relation."""
    return [
        (process.name, stage, i, i == len(process.stages) - 1)
        for process in catalog
        for i, stage in enumerate(process.stages)
    ]

"""The business-process catalog's shape: processes and their stages, in order, and the one
temporary table `_catalog` through which SQL statements read it.

The catalog itself lives in `sla.yaml` (see `sla.policy`); collectors use it to know how
far a transaction got and when it completed, the evaluation to know when one stalled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from q2c.durations import duration_text

# Per connection or transaction, one row per stage; see `stage_rows`.
CATALOG_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS _catalog (
    process text, stage text, stage_index integer, is_last boolean,
    stalled_after interval, stalled_label text,
    PRIMARY KEY (process, stage)
)"""
INSERT_CATALOG = "INSERT INTO _catalog VALUES (%s, %s, %s, %s, %s, %s)"


@dataclass(frozen=True)
class Process:
    """One business process, its stages in the order a transaction passes them, and how
    long a transaction may wait for each stage after the one before."""

    name: str
    stages: tuple[str, ...]
    stalled_after: tuple[timedelta, ...]

    def index(self, stage: str) -> int | None:
        """Position of `stage` in this process (0-based), None if it is not one of ours."""
        try:
            return self.stages.index(stage)
        except ValueError:
            return None


def stage_rows(
    catalog: tuple[Process, ...],
) -> list[tuple[str, str, int, bool, timedelta, str]]:
    """The rows of `_catalog`: (process, stage, index, is_last, stalled_after, its label)
    for every stage."""
    return [
        (process.name, stage, i, i == len(process.stages) - 1, wait, duration_text(wait))
        for process in catalog
        for i, (stage, wait) in enumerate(zip(process.stages, process.stalled_after, strict=True))
    ]

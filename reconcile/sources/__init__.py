"""What a source of records is to the engine: it streams its records into a staging table
and says which fields it gave; when it fails, it says why and where (SourceError).

Each source type (file, http, sql) is a pydantic record of its own module with `provides`,
`load` and `probe`; records reach the staging table as text (or NULL), the engine casts
them in SQL.
"""

from __future__ import annotations

from typing import NamedTuple

import psycopg

from q2c.errors import Q2CError


class SourceError(Q2CError):
    """A source failed: `reason` says why, `at` where (a file and line, a page, a row)."""

    def __init__(self, reason: str, at: str | None = None) -> None:
        super().__init__(f"{reason} (at {at})" if at else reason)
        self.reason = reason
        self.at = at


class StagingTable(NamedTuple):
    """Where a source's records go: a temporary table of the run's transaction with one
    `text` column per canonical field (`columns`, in order) and `_at`, where the record
    came from ("invoices-2.csv line 17", "page 3", "row 12")."""

    cursor: psycopg.Cursor
    name: str
    columns: tuple[str, ...]


class LoadResult(NamedTuple):
    """How many records a source loaded, and the canonical fields it gave."""

    rows: int
    provided: tuple[str, ...]

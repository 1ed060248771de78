"""Free-text search terms as SQL patterns."""

from __future__ import annotations


def contains_pattern(term: str) -> str:
    """An ILIKE pattern matching `term` anywhere, as typed: its %, _ and backslashes are
    literal characters, not wildcards (PostgreSQL's default LIKE escape is the backslash)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"

"""Saved views: a person's named filter sets of the exceptions list, kept as the query
string of the list's address. Opening one is opening its link, which anyone allowed to see
exceptions may be sent; only its owner lists, replaces or deletes it. Saving and deleting
are audited (`saved_view.save`, `saved_view.delete`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import Engine, text

from q2c.errors import Q2CError
from queries.audit import record
from queries.users import allowed_user

PAGE = "exceptions"  # the page whose filters a view holds
MAX_NAME_CHARS = 80
MAX_QUERY_CHARS = 2000
_NOT_FILTERS = ("id",)  # what an address says beside the filters: the detail shown


@dataclass(frozen=True)
class SavedView:
    """One person's view: its name and the query string of its address."""

    id: int
    owner: str
    name: str
    query: str
    updated_at: datetime

    @property
    def address(self) -> str:
        """The link that opens the view (relative to the console)."""
        return f"/{PAGE}?{self.query}" if self.query else f"/{PAGE}"


def _normalised(query: str) -> str:
    """`query` ("?status=open&…" or without "?") as a view keeps it: its filters only, by
    name (the values of one in their order), so that the same filters give the same link."""
    pairs = parse_qsl(query.removeprefix("?"), keep_blank_values=True)
    kept = urlencode(
        sorted(((k, v) for k, v in pairs if k not in _NOT_FILTERS), key=lambda p: p[0])
    )
    if len(kept) > MAX_QUERY_CHARS:
        raise Q2CError(f"a view holds at most {MAX_QUERY_CHARS} characters of filters")
    return kept


def save_view(engine: Engine, actor: str, name: str, query: str) -> SavedView:
    """Save the filters of `query` as the actor's view `name`, replacing the one of that
    name if they have one."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise Q2CError(f"a view needs a name of 1 to {MAX_NAME_CHARS} characters")
    kept = _normalised(query)
    with engine.begin() as conn:
        user = allowed_user(conn, actor, "exceptions.view")
        row = conn.execute(
            text(
                "INSERT INTO saved_views (owner, name, query) VALUES (:owner, :name, :query) "
                "ON CONFLICT (owner, name) DO UPDATE SET query = excluded.query, "
                "updated_at = now() RETURNING id, owner, name, query, updated_at"
            ),
            {"owner": user.username, "name": name, "query": kept},
        ).one()
        record(
            conn,
            user.username,
            "saved_view.save",
            object_type="saved_view",
            object_id=row.id,
            detail={"name": name, "query": kept},
        )
    return SavedView(**row._mapping)


def list_views(engine: Engine, actor: str) -> list[SavedView]:
    """The actor's views, by name (an empty list when they have none)."""
    with engine.connect() as conn:
        user = allowed_user(conn, actor, "exceptions.view")
        rows = conn.execute(
            text(
                "SELECT id, owner, name, query, updated_at FROM saved_views "
                "WHERE owner = :owner ORDER BY name"
            ),
            {"owner": user.username},
        )
        return [SavedView(**row._mapping) for row in rows]


def delete_view(engine: Engine, actor: str, name: str) -> int:
    """Delete the actor's view `name` (another person's views are not theirs to delete);
    returns its id."""
    with engine.begin() as conn:
        user = allowed_user(conn, actor, "exceptions.view")
        row = conn.execute(
            text(
                "DELETE FROM saved_views WHERE owner = :owner AND name = :name RETURNING id, query"
            ),
            {"owner": user.username, "name": name},
        ).one_or_none()
        if row is None:
            raise Q2CError(f"{user.username} has no view named '{name}'")
        record(
            conn,
            user.username,
            "saved_view.delete",
            object_type="saved_view",
            object_id=row.id,
            detail={"name": name, "query": row.query},
        )
    return int(row.id)

"""Saved views are a person's own named filter sets: saved (again under the same name:
replaced), listed by name, opened as their link, deleted by their owner only; saving and
deleting are audited, and a role that may not see exceptions keeps none."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from q2c.errors import Q2CError
from queries.roles import PermissionDenied
from queries.saved_views import delete_view, list_views, save_view


def _audit(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT actor, action, detail->>'name' FROM audit_log "
                "WHERE action LIKE 'saved_view.%' ORDER BY id"
            )
        ).all()


def test_views_are_saved_listed_replaced_and_deleted_by_their_owner(engine: Engine, users) -> None:
    save_view(engine, "fin", "critical open", "?status=open&impact=critical&id=12")
    save_view(engine, "fin", "aged", "age=older+than+24+h")
    save_view(engine, "ops", "critical open", "impact=critical")
    replaced = save_view(engine, "fin", " critical open ", "impact=critical&impact=high")

    mine = list_views(engine, "fin")
    with pytest.raises(Q2CError, match="ops has no view named 'aged'"):
        delete_view(engine, "ops", "aged")  # fin's, not theirs
    delete_view(engine, "fin", "aged")

    assert [(v.name, v.query, v.address) for v in mine] == [
        ("aged", "age=older+than+24+h", "/exceptions?age=older+than+24+h"),
        ("critical open", "impact=critical&impact=high", "/exceptions?impact=critical&impact=high"),
    ]
    assert replaced.id == mine[1].id  # the same view, its filters replaced
    assert [v.name for v in list_views(engine, "fin")] == ["critical open"]
    assert [v.query for v in list_views(engine, "ops")] == ["impact=critical"]
    assert _audit(engine) == [
        ("fin", "saved_view.save", "critical open"),
        ("fin", "saved_view.save", "aged"),
        ("ops", "saved_view.save", "critical open"),
        ("fin", "saved_view.save", "critical open"),
        ("fin", "saved_view.delete", "aged"),
    ]


def test_a_view_needs_a_name_and_a_role_that_sees_exceptions(engine: Engine, users) -> None:
    with pytest.raises(Q2CError, match="a name of 1 to 80"):
        save_view(engine, "fin", "  ", "status=open")
    with pytest.raises(PermissionDenied, match="finance_ops"):
        save_view(engine, "cio", "mine", "status=open")
    with pytest.raises(PermissionDenied):
        list_views(engine, "cio")

    assert list_views(engine, "fin") == []

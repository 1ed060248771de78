"""The audit log reads both trails as one, newest first: filtered by actor, action, object
and time, counted, exported in full, masked, and for admins only."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from queries.audit_trail import AuditFilter, audit_actions, count_audit, export_audit, list_audit
from queries.exceptions import ExceptionFilter, assign, comment, list_exceptions
from queries.replays import discard_dead_letters, list_dead_letters
from queries.roles import PermissionDenied
from queries.sign_in import sign_in
from queries.user_admin import set_role
from tests.support.fixtures import PASSWORD
from tests.support.otlp import dead_letter_record, logs_request, stage_span, traces_request


@pytest.fixture
def trail(send, engine: Engine, users: dict[str, str]) -> int:
    """A sign-in, a role change, an assignment and a comment holding a card number: the
    exception's number."""
    send(
        traces_request(
            stage_span(
                "INV-A1", "invoice_posting", "invoice_recorded", "erp", at_s=0, seq=1, error="x"
            )
        )
    )
    [exception] = list_exceptions(engine, ExceptionFilter())
    sign_in(engine, "fin", PASSWORD, "10.1.1.1")
    set_role(engine, "ada", "cio", "finance_ops")
    assign(engine, "fin", [exception["id"]], "fin")
    comment(engine, "fin", exception["id"], "customer paid with 4111111111111111")
    return exception["id"]


def test_both_trails_read_as_one_newest_first(engine: Engine, trail: int) -> None:
    rows = list_audit(engine, "ada", AuditFilter())

    actions = [row["action"] for row in rows]
    assert actions[:4] == [
        "exception.commented",
        "exception.assigned",
        "user.role_changed",
        "sign_in",
    ]
    assert count_audit(engine, "ada", AuditFilter()) == len(rows)
    commented = rows[0]
    assert (commented["actor"], commented["object_type"], commented["object_id"]) == (
        "fin",
        "exception",
        str(trail),
    )
    assert "4111111111111111" not in str(commented["detail"])  # masked, as everywhere


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (AuditFilter(actor="fin"), {"exception.commented", "exception.assigned", "sign_in"}),
        (AuditFilter(action="exception.assigned"), {"exception.assigned"}),
        (AuditFilter(action="user.role_changed"), {"user.role_changed"}),
        (AuditFilter(object_type="user", object_id="cio"), {"user.role_changed"}),
        (AuditFilter(until=datetime.now(UTC) - timedelta(days=1)), set()),
    ],
    ids=["actor", "exception action", "other action", "object", "time"],
)
def test_filters_apply_to_both_trails(
    engine: Engine, trail: int, filters: AuditFilter, expected: set[str]
) -> None:
    rows = list_audit(engine, "ada", filters)

    assert {row["action"] for row in rows} == expected
    assert count_audit(engine, "ada", filters) == len(rows)


def test_an_exceptions_object_filter_finds_its_actions(engine: Engine, trail: int) -> None:
    rows = list_audit(engine, "ada", AuditFilter(object_type="exception", object_id=str(trail)))

    assert [row["action"] for row in rows] == ["exception.commented", "exception.assigned"]


def test_the_export_writes_every_row_masked_and_the_actions_are_listed(
    engine: Engine, trail: int
) -> None:
    out = io.StringIO()

    written = export_audit(engine, "ada", AuditFilter(), out)

    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert written == len(rows) == count_audit(engine, "ada", AuditFilter())
    assert "4111111111111111" not in out.getvalue()
    assert {"exception.commented", "user.role_changed", "sign_in"} <= set(
        audit_actions(engine, "ada")
    )


def test_only_admins_read_the_audit_log(engine: Engine, trail: int) -> None:
    for reader in (
        lambda: list_audit(engine, "ops", AuditFilter()),
        lambda: count_audit(engine, "fin", AuditFilter()),
        lambda: export_audit(engine, "cio", AuditFilter(), io.StringIO()),
    ):
        with pytest.raises(PermissionDenied, match="reading the audit log needs the admin role"):
            reader()


def test_a_dead_letters_object_filter_finds_what_was_done_to_it(
    send, engine: Engine, users: dict[str, str]
) -> None:
    send(
        logs_request(
            dead_letter_record("INV-D1", at_s=0, target="http://erp.test/a", payload="{}"),
            dead_letter_record("INV-D2", at_s=1, target="http://erp.test/b", payload="{}"),
        ),
        path="/v1/logs",
    )
    first, second = sorted(letter["id"] for letter in list_dead_letters(engine, "ops"))
    discard_dead_letters(engine, "ops", [first], "posted by hand")
    discard_dead_letters(engine, "ops", [second], "duplicate")

    letters = list_audit(engine, "ada", AuditFilter(object_type="dead_letter"))
    one = list_audit(engine, "ada", AuditFilter(object_type="dead_letter", object_id=str(first)))

    assert [row["action"] for row in letters] == ["exception.dead_letter_discarded"] * 2
    assert [row["detail"]["comment"] for row in one] == ["posted by hand"]
    assert count_audit(engine, "ada", AuditFilter(object_type="dead_letter")) == 2

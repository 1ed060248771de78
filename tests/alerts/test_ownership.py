"""Ownership rules assign each new exception to the first matching rule's owner, once, as
the system with the rule named in its history; the assignment is an event of its own."""

from __future__ import annotations

import time

import psycopg
from sqlalchemy import Engine

from alerts.load import parse_alerts_config
from alerts.outbox import unpack
from alerts.ownership import assign_owners
from queries.exceptions import assign
from queries.user_admin import set_disabled
from tests.support.otlp import BASE_NS, NS, stage_span, traces_request


def _config(owners: list[dict]):
    return parse_alerts_config(
        {
            "channels": {
                "hook": {"type": "webhook", "url": "http://127.0.0.1:9/", "secret_env": "S"}
            },
            "owners": owners,
            "routes": [{"match": {"event": "exception.opened"}, "to": ["hook"]}],
        }
    )


CONFIG = _config(
    [
        {"match": {"process": "invoice_posting", "system": "erp"}, "owner": "fin"},
        {"match": {"process": "invoice_posting"}, "owner": "nobody-by-that-name"},
    ]
)


def _failure(invoice: str, system: str, seq: int):
    at_s = (time.time_ns() - BASE_NS) / NS
    stage = "invoice_recorded" if system == "erp" else "invoice_posted"
    return traces_request(
        stage_span(invoice, "invoice_posting", stage, system, at_s=at_s, seq=seq, error="down")
    )


def _state(db: psycopg.Connection, invoice: str) -> tuple:
    return db.execute(
        "SELECT id, owner, status FROM exceptions WHERE correlation_id = %s", (invoice,)
    ).fetchone()


def test_the_first_matching_rule_assigns_a_new_exception_once(
    send, run_evaluation, engine: Engine, users, db: psycopg.Connection
) -> None:
    send(_failure("INV-O1", "erp", 10), _failure("INV-O2", "billing", 20))
    send(_failure("INV-O3", "erp", 30))
    run_evaluation()
    taken = _state(db, "INV-O3")[0]
    assign(engine, "fin", [taken], "ops")  # a person was quicker: the rule leaves it be
    unpack(db)  # as the alerting pass does first

    first = assign_owners(engine, CONFIG)
    again = assign_owners(engine, CONFIG)

    erp, billing = _state(db, "INV-O1"), _state(db, "INV-O2")
    assert first.assigned == {erp[0]: "fin"} and again.assigned == {}
    assert erp[1:] == ("fin", "assigned")
    # The second rule's owner is no user: the exception stays in the queue, and it is said.
    assert billing[1:] == (None, "open") and first.unknown == {"nobody-by-that-name"}
    assert _state(db, "INV-O3")[1:] == ("ops", "assigned")
    [(actor, comment)] = db.execute(
        "SELECT actor, comment FROM exception_events WHERE exception_id = %s "
        "AND action = 'assigned'",
        (erp[0],),
    ).fetchall()
    assert actor == "system"
    assert comment == "ownership rule 1 of alerts.yaml (process=invoice_posting system=erp)"
    unpack(db)
    events = db.execute(
        "SELECT type, q2c_event_facts(a)->>'owner' FROM alert_events a "
        "WHERE exception_id = %s ORDER BY id",
        (erp[0],),
    ).fetchall()
    assert events == [("exception.opened", None), ("exception.assigned", "fin")]


def test_without_rules_no_exception_is_assigned(
    send, run_evaluation, engine: Engine, users, db: psycopg.Connection
) -> None:
    send(_failure("INV-O4", "erp", 40))
    run_evaluation()

    assert assign_owners(engine, _config([])).assigned == {}
    assert _state(db, "INV-O4")[1:] == (None, "open")


def test_a_rule_whose_owner_is_disabled_is_passed_over_for_the_next_that_matches(
    send, run_evaluation, engine: Engine, users, db: psycopg.Connection
) -> None:
    send(_failure("INV-O5", "erp", 50))
    run_evaluation()
    unpack(db)
    set_disabled(engine, "ada", "fin", True)
    rules = _config(
        [
            {"match": {"system": "erp"}, "owner": "fin"},  # disabled
            {"match": {"process": "invoice_posting"}, "owner": "ops"},
        ]
    )

    report = assign_owners(engine, rules)

    assert report.unknown == {"fin"}
    assert _state(db, "INV-O5")[1:] == ("ops", "assigned")
    [(comment,)] = db.execute(
        "SELECT comment FROM exception_events WHERE action = 'assigned' AND exception_id = %s",
        (_state(db, "INV-O5")[0],),
    ).fetchall()
    assert comment == "ownership rule 2 of alerts.yaml (process=invoice_posting)"

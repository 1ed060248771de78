"""The alerting outbox (migration 0017): each event is recorded once, in the transaction of
the change that caused it, whichever process made the change — the collector storing a
failure, the evaluator classifying it, a person assigning or resolving it, the dispatcher
giving up a replay — and a change that rolls back leaves none."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import Engine

from alerts.outbox import unpack
from alerts.run import LOCK_KEY
from q2c.settings import Settings
from queries.exceptions import assign, close_exceptions, reopen, unassign
from queries.replays import request_replays
from replay.dispatcher import Dispatcher
from tests.support.otlp import (
    BASE_NS,
    NS,
    dead_letter_record,
    logs_request,
    stage_span,
    traces_request,
)
from tests.support.peers import free_port
from tests.support.replays import drain


def _soon(seconds: float = 60) -> float:
    """`at_s` for stage_span of a moment `seconds` from now (after anything done so far)."""
    return (time.time_ns() - BASE_NS) / NS + seconds


def _failure(invoice: str, at_s: float, seq: int, error: str | None = "ledger closed"):
    return traces_request(
        stage_span(
            invoice, "invoice_posting", "invoice_recorded", "erp", at_s=at_s, seq=seq, error=error
        )
    )


def _events(db: psycopg.Connection, correlation_id: str) -> list[tuple]:
    unpack(db)  # as the alerting pass does before it reads them
    return db.execute(
        "SELECT type, exception_id, q2c_event_facts(a) FROM alert_events a "
        "WHERE correlation_id = %s ORDER BY id",
        (correlation_id,),
    ).fetchall()


def _types(db: psycopg.Connection, correlation_id: str) -> list[str]:
    return [kind for kind, _, _ in _events(db, correlation_id)]


def _exception_id(db: psycopg.Connection, correlation_id: str) -> int:
    (found,) = db.execute(
        "SELECT id FROM exceptions WHERE correlation_id = %s ORDER BY id DESC LIMIT 1",
        (correlation_id,),
    ).fetchone()
    return found


def test_a_failure_is_announced_once_classified_with_its_impact_and_only_once(
    send, db: psycopg.Connection, run_evaluation
) -> None:
    request = _failure("INV-A1", 1, 10)
    send(request)
    stored_only = _types(db, "INV-A1")
    run_evaluation()
    send(request)  # delivered twice: nothing new happened
    run_evaluation()

    assert stored_only == []  # its impact is not known until the evaluator classifies it
    [(kind, exception_id, facts)] = _events(db, "INV-A1")
    assert (kind, exception_id) == ("exception.opened", _exception_id(db, "INV-A1"))
    impact = db.execute("SELECT impact FROM exceptions WHERE id = %s", (exception_id,)).fetchone()
    assert facts["impact"] == impact[0]
    assert facts["process"] == "invoice_posting" and facts["stage"] == "invoice_recorded"
    assert facts["system"] == "erp" and facts["status"] == "open"
    assert facts["message"] == "ledger closed" and len(facts["fingerprint"]) == 16


def test_assigning_and_resolving_are_events_of_their_own_in_order(
    send, engine: Engine, users, db: psycopg.Connection, run_evaluation
) -> None:
    send(_failure("INV-A2", 1, 20))
    run_evaluation()
    exception_id = _exception_id(db, "INV-A2")

    assign(engine, "fin", [exception_id], "ops")
    assign(engine, "fin", [exception_id], "ops")  # the same owner again: no change, no event
    close_exceptions(engine, "fin", [exception_id], "resolved", "reposted by hand")

    events = _events(db, "INV-A2")
    assert [kind for kind, _, _ in events] == [
        "exception.opened",
        "exception.assigned",
        "exception.resolved",
    ]
    assert events[1][2]["owner"] == "ops" and events[1][2]["status"] == "assigned"
    assert events[2][2]["status"] == "resolved"
    assert events[2][2]["resolution"] == "reposted by hand"


def test_unassigning_is_an_event_that_names_who_had_it(
    send, engine: Engine, users, db: psycopg.Connection, run_evaluation
) -> None:
    send(_failure("INV-A8", 1, 80))
    run_evaluation()
    exception_id = _exception_id(db, "INV-A8")

    assign(engine, "fin", [exception_id], "ops")
    unassign(engine, "fin", [exception_id])
    unassign(engine, "fin", [exception_id])  # nobody has it any more: no change, no event

    events = _events(db, "INV-A8")
    assert [kind for kind, _, _ in events] == [
        "exception.opened",
        "exception.assigned",
        "exception.unassigned",
    ]
    unassigned = events[2][2]
    assert unassigned["previous_owner"] == "ops" and unassigned["status"] == "open"
    assert "owner" not in unassigned
    assert events[1][2]["owner"] == "ops"  # each event as it was when it happened
    assert "owner" not in events[0][2] and events[0][2]["process"] == "invoice_posting"


def test_reopening_what_a_person_closed_is_an_event_with_the_status_it_had(
    send, engine: Engine, users, db: psycopg.Connection, run_evaluation
) -> None:
    send(_failure("INV-A9", 1, 90))
    run_evaluation()
    exception_id = _exception_id(db, "INV-A9")

    close_exceptions(engine, "fin", [exception_id], "ignored", "known issue")
    reopen(engine, "fin", [exception_id], "it is not known after all")
    close_exceptions(engine, "fin", [exception_id], "resolved", "reposted")
    reopen(engine, "fin", [exception_id], "still failing")

    events = _events(db, "INV-A9")
    assert [kind for kind, _, _ in events] == [
        "exception.opened",
        "exception.reopened",
        "exception.resolved",
        "exception.reopened",
    ]
    assert [facts["previous_status"] for kind, _, facts in events if "reopened" in kind] == [
        "ignored",
        "resolved",
    ]
    assert events[3][2]["status"] == "open" and "resolution" not in events[3][2]
    assert events[2][2]["resolution"] == "reposted"


def test_a_later_success_auto_resolves_an_announced_exception(
    send, db: psycopg.Connection, run_evaluation
) -> None:
    send(_failure("INV-A3", 1, 30))
    run_evaluation()
    send(_failure("INV-A3", 5, 31, error=None))  # the stage succeeds at last

    assert _types(db, "INV-A3") == ["exception.opened", "exception.auto_resolved"]


def test_an_exception_closed_before_it_was_classified_is_no_event_until_reopened(
    send, engine: Engine, users, db: psycopg.Connection, run_evaluation
) -> None:
    send(_failure("INV-B7", 1, 170))
    exception_id = _exception_id(db, "INV-B7")
    close_exceptions(engine, "fin", [exception_id], "resolved", "a retry went through")
    run_evaluation()  # classified once closed: nobody is told it opened
    reopen(engine, "fin", [exception_id], "the retry failed after all")
    close_exceptions(engine, "fin", [exception_id], "resolved", "reposted")

    assert _types(db, "INV-B7") == ["exception.reopened", "exception.resolved"]


def test_an_exception_closed_before_anyone_was_told_is_no_event(
    send, db: psycopg.Connection, run_evaluation
) -> None:
    send(_failure("INV-A4", 1, 40), _failure("INV-A4", 5, 41, error=None))
    run_evaluation()

    status = db.execute("SELECT status FROM exceptions WHERE correlation_id = 'INV-A4'").fetchone()
    assert status == ("auto_resolved",)
    assert _types(db, "INV-A4") == []


def test_a_regression_is_announced_with_the_exception_it_regressed_from(
    send, engine: Engine, users, db: psycopg.Connection, run_evaluation
) -> None:
    send(_failure("INV-A5", 1, 50))
    run_evaluation()
    resolved = _exception_id(db, "INV-A5")
    close_exceptions(engine, "fin", [resolved], "resolved", "ledger reopened")
    send(_failure("INV-A5", _soon(), 51))
    run_evaluation()
    run_evaluation()

    regressed = _exception_id(db, "INV-A5")
    assert regressed != resolved
    later = [(kind, i, facts.get("regressed_from")) for kind, i, facts in _events(db, "INV-A5")]
    assert later[-2:] == [
        ("exception.opened", regressed, resolved),
        ("exception.regressed", regressed, resolved),
    ]


def test_a_change_rolled_back_leaves_no_event(
    send, db: psycopg.Connection, db_url: str, run_evaluation
) -> None:
    send(_failure("INV-A6", 1, 60))
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE exceptions SET due_at = now(), impact = 'critical' "
            "WHERE correlation_id = 'INV-A6'"
        )
        conn.rollback()
    rolled_back = _types(db, "INV-A6")
    run_evaluation()

    assert rolled_back == []
    assert _types(db, "INV-A6") == ["exception.opened"]


def test_a_dead_letter_and_its_failed_replay_are_events(
    send, engine: Engine, users, db: psycopg.Connection, db_url: str
) -> None:
    target = f"http://127.0.0.1:{free_port()}/erp"  # nobody listens: every attempt is refused
    record = dead_letter_record("INV-A7", at_s=1, target=target, payload='{"invoice": "A7"}')
    send(logs_request(record), path="/v1/logs")
    (letter,) = db.execute("SELECT id FROM dead_letters WHERE correlation_id = 'INV-A7'").fetchone()
    request_replays(engine, "ops", [letter], frozenset({"127.0.0.1"}))
    settings = Settings(
        database_url=None,
        replay_allowed_hosts="127.0.0.1",
        replay_backoff_seconds=0.01,
        replay_timeout_seconds=0.5,
        replay_max_attempts=2,
    )
    dispatcher = Dispatcher(db_url, settings)
    try:
        drain(dispatcher, db)
    finally:
        dispatcher.close()

    rows = db.execute(
        "SELECT type, dead_letter_id, facts FROM alert_events WHERE correlation_id = 'INV-A7' "
        "AND type IN ('dead_letter.created', 'replay.failed') ORDER BY id"
    ).fetchall()
    assert [(kind, dead_letter) for kind, dead_letter, _ in rows] == [
        ("dead_letter.created", letter),
        ("replay.failed", letter),
    ]
    created, failed = rows[0][2], rows[1][2]
    assert created["target_url"] == target and created["message"] == "period 2026-11 is closed"
    assert failed["requested_by"] == "ops" and failed["attempts"] == 2
    assert "refused" in failed["error"]


def test_the_runtime_role_cannot_delete_from_the_outbox(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("DELETE FROM alert_events")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("DELETE FROM alert_outbox")


_PACKED = (
    "INSERT INTO alert_outbox (types, correlation_ids, exception_ids, impacts, statuses, "
    "owners, resolutions, facts) VALUES (%s, %s, %s, ARRAY['high'], ARRAY['open'], "
    "ARRAY[NULL], ARRAY[NULL], ARRAY[NULL::jsonb])"
)


@pytest.mark.parametrize(
    ("types", "correlation_ids", "exception_ids"),
    [
        (["exception.assigned", "slo.alert"], ["INV-1", "INV-1"], [1, 1]),  # not an exception's
        ([None], ["INV-1"], [1]),
        (["exception.assigned"], [None], [1]),
        (["exception.assigned"], ["INV-1"], [None]),
        (["exception.assigned", "exception.resolved"], ["INV-1"], [1]),  # not as long
    ],
)
def test_an_outbox_row_that_unpacking_would_fail_on_is_refused(
    db: psycopg.Connection, types: list, correlation_ids: list, exception_ids: list
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(_PACKED, (types, correlation_ids, exception_ids))


def test_unpacking_waits_for_the_router_s_lock(db: psycopg.Connection, db_url: str) -> None:
    db.execute(_PACKED, (["exception.assigned"], ["INV-L1"], [1]))
    with psycopg.connect(db_url) as router:
        router.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))  # a pass routing
        with psycopg.connect(db_url, autocommit=True) as other:
            other.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                unpack(other)
        assert unpack(router) == (1, False)  # the lock's holder unpacks


def test_a_statement_s_events_are_one_outbox_row_unpacked_once_in_order(
    send, db: psycopg.Connection, run_evaluation
) -> None:
    send(*(_failure(f"INV-B{n}", 1, 100 + n) for n in range(3)))
    run_evaluation()  # one statement classifies all three

    packed = db.execute(
        "SELECT types, correlation_ids FROM alert_outbox WHERE 'exception.opened' = ANY(types)"
    ).fetchall()
    assert [(types, sorted(ids)) for types, ids in packed] == [
        (["exception.opened"] * 3, ["INV-B0", "INV-B1", "INV-B2"])
    ]
    assert unpack(db) == (3, False) and unpack(db) == (0, False)
    assert db.execute("SELECT count(*) FROM alert_outbox").fetchone() == (0,)
    opened = db.execute(
        "SELECT correlation_id FROM alert_events WHERE type = 'exception.opened' ORDER BY id"
    ).fetchall()
    assert [c for (c,) in opened] == packed[0][1]  # in the outbox row's order


def test_a_closing_is_told_against_an_opening_unpacked_by_an_earlier_pass(
    send, db: psycopg.Connection, run_evaluation
) -> None:
    send(_failure("INV-B5", 1, 150))
    run_evaluation()
    assert unpack(db) == (1, False)  # a pass told the opening
    send(_failure("INV-B5", 5, 151, error=None))

    assert _types(db, "INV-B5") == ["exception.opened", "exception.auto_resolved"]


def test_an_opening_repeated_in_the_outbox_is_dropped_and_the_rest_unpacked(
    send, db: psycopg.Connection, owner_db: psycopg.Connection, run_evaluation
) -> None:
    send(_failure("INV-B6", 1, 160))
    run_evaluation()
    exception_id = _exception_id(db, "INV-B6")
    # The once-only rule broken by hand: announced twice, then assigned.
    for kind in ("exception.opened", "exception.assigned"):
        owner_db.execute(
            "INSERT INTO alert_outbox (types, correlation_ids, exception_ids, impacts, statuses, "
            "owners, resolutions, facts) VALUES (ARRAY[%s], ARRAY['INV-B6'], ARRAY[%s::bigint], "
            "ARRAY['high'], ARRAY['open'], ARRAY['ops'], ARRAY[NULL], ARRAY[NULL::jsonb])",
            (kind, exception_id),
        )

    assert _types(db, "INV-B6") == ["exception.opened", "exception.assigned"]

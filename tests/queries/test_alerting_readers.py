"""The alerting readers: the notification log newest first, filtered by channel and status,
a bounded page at a time, linked to its exception; the open groups; finance_ops and up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from queries.alerting import (
    MAX_PAGE_ROWS,
    LogFilter,
    active_groups,
    check_test_send,
    count_notifications,
    list_notifications,
    logged_channels,
    record_test_send,
)
from queries.roles import PermissionDenied
from tests.support.alerting import alerting, config, receiver, storm


@pytest.fixture
def logged(send, run_evaluation, db_url: str, users: dict[str, str]) -> None:
    """Three failures by the collector, one group each, told to a webhook that delivers and
    a PagerDuty that is not there (its attempt retried, then left pending)."""
    send(storm(3, first_seq=7_000_000, prefix="INV-R"))
    run_evaluation()
    routes = [
        {
            "match": {"event": "exception.opened"},
            "to": ["ops-hook", "pager"],
            "group_by": ["correlation_id"],
        }
    ]
    with receiver() as hook:
        instance = alerting(db_url, config(hook.url, "http://127.0.0.1:9/nowhere", routes=routes))
        try:
            now = datetime.now(UTC)
            instance.run_once(now)
            instance.run_once(now + timedelta(minutes=1))
        finally:
            instance.close()


def test_the_log_is_newest_first_and_links_each_to_its_exception(
    engine: Engine, logged: None
) -> None:
    rows = list_notifications(engine, "fin", LogFilter())

    assert len(rows) == 6 == count_notifications(engine, "fin", LogFilter())
    order = [(row["created_at"], row["id"]) for row in rows]
    assert order == sorted(order, reverse=True)
    assert all(row["exception_id"] is not None for row in rows)
    assert {row["correlation_id"] for row in rows} == {f"INV-R{i}" for i in range(3)}
    assert logged_channels(engine, "fin") == ["ops-hook", "pager"]


def test_filters_by_channel_and_status(engine: Engine, logged: None) -> None:
    delivered = list_notifications(engine, "fin", LogFilter(status="delivered"))
    pager = list_notifications(engine, "fin", LogFilter(channel="pager"))

    assert {(r["channel"], r["status"]) for r in delivered} == {("ops-hook", "delivered")}
    assert len(delivered) == 3
    assert {r["channel"] for r in pager} == {"pager"}
    assert all(r["status"] != "delivered" for r in pager)
    # The channel is down: its first attempt says why, the others wait (never tried).
    assert [r["outcome"] for r in pager if r["outcome"]] != []
    assert list_notifications(engine, "fin", LogFilter(channel="nobody")) == []
    assert count_notifications(engine, "fin", LogFilter(channel="pager", status="delivered")) == 0


def test_a_page_is_bounded(engine: Engine, logged: None) -> None:
    first = list_notifications(engine, "fin", LogFilter(), limit=4)
    rest = list_notifications(engine, "fin", LogFilter(), limit=4, offset=4)

    assert len(first) == 4 and len(rest) == 2
    assert {r["id"] for r in first}.isdisjoint(r["id"] for r in rest)
    assert len(list_notifications(engine, "fin", LogFilter(), limit=10**9)) <= MAX_PAGE_ROWS


def test_the_open_groups_are_listed(engine: Engine, logged: None) -> None:
    groups = active_groups(engine, "fin")

    assert len(groups) == 3
    assert {g["state"] for g in groups} == {"firing"}


def test_a_viewer_reads_no_alerting(engine: Engine, logged: None) -> None:
    for reader in (
        lambda: list_notifications(engine, "cio", LogFilter()),
        lambda: count_notifications(engine, "cio", LogFilter()),
        lambda: logged_channels(engine, "cio"),
        lambda: active_groups(engine, "cio"),
    ):
        with pytest.raises(PermissionDenied, match="needs the finance_ops role"):
            reader()


def test_only_oncall_and_up_send_tests_and_each_is_audited(engine: Engine, users: dict) -> None:
    check_test_send(engine, "ops")
    record_test_send(engine, "ops", "ops-hook", "delivered: 200")
    for refused in (
        lambda: check_test_send(engine, "fin"),
        lambda: record_test_send(engine, "fin", "ops-hook", "delivered"),
    ):
        with pytest.raises(PermissionDenied, match="sending test notifications needs the oncall"):
            refused()

    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT actor, object_type, object_id, detail FROM audit_log "
            "WHERE action = 'alert.test'"
        ).all()
    assert [tuple(row) for row in rows] == [
        ("ops", "channel", "ops-hook", {"outcome": "delivered: 200"})
    ]

"""What each console page loads, timed in-process with database time (median of 5 after a
warm-up): the readers a page calls, with the arguments the page gives them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from bench._harness import median_seconds
from queries.audit_trail import AuditFilter, audit_actions, count_audit, list_audit
from queries.exceptions import (
    ORDERS,
    ExceptionFilter,
    count_exceptions,
    exception_detail,
    group_exceptions,
    list_exceptions,
)
from queries.kpis import collect_kpis, comparison_kpis, rollup_window
from queries.overview import telemetry_presence
from queries.replays import dead_letter_detail, list_dead_letters, replay_status
from queries.transactions import find_transactions, journey, stalled_transactions
from queries.trends import daily_trends
from queries.user_admin import list_users
from sla.policy import Policy

EXCEPTION_LIST_TARGET = 0.3  # in seconds
PAGE_TARGET = 1.0  # in seconds
LOOKUP_TARGET = 0.05  # in seconds: the trace explorer's lookup by a business key
PAGE_ROWS = 500  # exceptions a page shows at a time (console/app_pages/exceptions.py)
AUDIT_ROWS = 200  # audit rows a page shows at a time (console/app_pages/audit.py)
ADMIN = "admin"  # the demo's admin login reads every page


@dataclass(frozen=True)
class Measure:
    """One page load to time: what it is, its target and the work."""

    name: str
    target: float  # in seconds
    work: Callable[[], object]


def exception_filters(owner: str) -> dict[str, tuple[ExceptionFilter, bool]]:
    """The triage views measured: name → (filters, grouped)."""
    return {
        "no filter": (ExceptionFilter(), False),
        "process=invoice_posting": (ExceptionFilter(process="invoice_posting"), False),
        "impact=critical": (ExceptionFilter(impact=("critical",)), False),
        f"owner={owner}": (ExceptionFilter(owner=owner), False),
        "text 'timeout'": (ExceptionFilter(search="timeout"), False),
        "older than 24 h": (ExceptionFilter(older_than=timedelta(hours=24)), False),
        "grouped": (ExceptionFilter(), True),
    }


def exception_lists(engine: Engine, owner: str) -> Iterator[Measure]:
    """The exceptions page's list for each view, page (first, middle, last) and order, as
    the page loads them: the count and the page of rows or, grouped, the groups and a page
    of the largest group's rows (the group the page opens on)."""
    for view, (filters, grouped) in exception_filters(owner).items():
        listed = filters
        if grouped:
            largest = group_exceptions(engine, filters)[0]
            listed = replace(filters, fingerprint=largest["fingerprint"])
            shown = largest["exceptions"]
        else:
            shown = count_exceptions(engine, filters)
        pages = max(1, -(-shown // PAGE_ROWS))
        for page in sorted({1, pages // 2 + 1, pages}):
            for order in ORDERS:

                def load(
                    filters=filters, grouped=grouped, listed=listed, page=page, order=order
                ) -> None:
                    if grouped:  # counted with the groups, as the page does
                        group_exceptions(engine, filters)
                    else:
                        count_exceptions(engine, filters)
                    list_exceptions(engine, listed, PAGE_ROWS, (page - 1) * PAGE_ROWS, order)

                name = f"exceptions {view}, page {page:,}/{pages:,}, {order}"
                yield Measure(name, EXCEPTION_LIST_TARGET, load)


def other_pages(engine: Engine, policy: Policy, key: str) -> Iterator[Measure]:
    """Every other page's first load, and the trace explorer's lookup of `key`."""
    first_exception = list_exceptions(engine, ExceptionFilter(), 1)[0]["id"]
    first_letter = list_dead_letters(engine, ADMIN, "dead", None, 1)[0]["id"]

    def overview() -> None:
        telemetry_presence(engine)
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        collect_kpis(engine, policy, timedelta(hours=24), end)
        comparison_kpis(engine, policy, timedelta(hours=24), end - timedelta(hours=24))
        daily_trends(engine, policy, 14)

    def stages() -> None:
        end = datetime.now(UTC)
        rollup_window(engine, end - timedelta(hours=24), end)
        stalled_transactions(engine)

    def lookup() -> None:
        found = find_transactions(engine, key)
        assert found, key
        journey(engine, found[0]["correlation_id"])

    def dead_letters() -> None:
        list_dead_letters(engine, ADMIN, "dead", None)
        dead_letter_detail(engine, ADMIN, first_letter)
        replay_status(engine, ADMIN, 50)

    def audit_log() -> None:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        filters = AuditFilter(since=today - timedelta(days=7), until=today + timedelta(days=1))
        audit_actions(engine, ADMIN)
        count_audit(engine, ADMIN, filters)
        list_audit(engine, ADMIN, filters, AUDIT_ROWS, 0)

    yield Measure("overview (presence, KPIs now and before, 14-day trends)", PAGE_TARGET, overview)
    yield Measure("stages (24 h rollups, stalled transactions)", PAGE_TARGET, stages)
    yield Measure(
        "exception detail (failures, history, timeline)",
        PAGE_TARGET,
        lambda: exception_detail(engine, first_exception),
    )
    yield Measure(f"trace explorer: lookup of {key} and its journey", LOOKUP_TARGET, lookup)
    yield Measure("dead letters (list, detail, replay status)", PAGE_TARGET, dead_letters)
    yield Measure("users", PAGE_TARGET, lambda: list_users(engine, ADMIN))
    yield Measure("audit log (actions, count, first page of 7 days)", PAGE_TARGET, audit_log)


def report(measures: Iterator[Measure]) -> list[str]:
    """Time and print each measure; returns the names of those that missed their target."""
    missed = []
    for measure in measures:
        seconds = median_seconds(measure.work)
        met = seconds <= measure.target
        if not met:
            missed.append(measure.name)
        print(
            f"  {measure.name:<72} {seconds * 1000:8.1f} ms  "
            f"(≤ {measure.target * 1000:,.0f} ms: {'met' if met else 'MISSED'})",
            flush=True,
        )
    return missed

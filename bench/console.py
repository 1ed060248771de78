"""Console benchmark: the data each page loads, and a trace-explorer lookup, with a large
history stored.

    python -m bench.console [--spans 10000000]

Every reader a page calls on first load is timed in-process, database time included
(median of 5 after a warm-up); the trace-explorer lookup is `find_transactions` by an
invoice number plus `journey` of the transaction found.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bench._harness import bench_database
from bench.background import fill
from demo.seed import seed_users
from q2c.database import create_db_engine
from q2c.settings import Settings
from queries.exceptions import ExceptionFilter, exception_detail, group_exceptions, list_exceptions
from queries.kpis import RollupWindow, collect_kpis
from queries.overview import telemetry_presence
from queries.replays import dead_letter_detail, list_dead_letters, replay_status
from queries.transactions import find_transactions, journey, stalled_transactions
from queries.trends import daily_trends
from queries.user_admin import list_users
from sla.policy import load_policy


def _median_seconds(work: Callable[[], object], runs: int = 5) -> float:
    work()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=10_000_000)
    args = parser.parse_args()
    policy = load_policy()
    with bench_database() as url:
        started = time.perf_counter()
        fill(url, args.spans)
        print(f"stored {args.spans:,} spans of history in {time.perf_counter() - started:.0f} s")
        engine = create_db_engine(url, Settings(database_url=None))
        seed_users(engine)
        first_exception = list_exceptions(engine, ExceptionFilter(), 1)[0]["id"]
        first_letter = list_dead_letters(engine, "admin", None, None, 1)[0]["id"]

        def overview() -> None:
            telemetry_presence(engine)
            end = datetime.now(UTC)
            collect_kpis(engine, policy, timedelta(hours=24), end)
            collect_kpis(engine, policy, timedelta(hours=24), end - timedelta(hours=24), False)
            daily_trends(engine, policy, 14)

        def stages() -> None:
            end = datetime.now(UTC)
            with engine.connect() as conn:
                RollupWindow(conn, end - timedelta(hours=24), end)
            stalled_transactions(engine)

        def exceptions() -> None:
            list_exceptions(engine, ExceptionFilter())
            group_exceptions(engine, ExceptionFilter())
            exception_detail(engine, first_exception)

        def dead_letters() -> None:
            list_dead_letters(engine, "admin")
            dead_letter_detail(engine, "admin", first_letter)
            replay_status(engine, "admin")

        def users() -> None:
            list_users(engine, "admin")

        pages = {
            "overview": overview,
            "stages": stages,
            "exceptions": exceptions,
            "dead letters": dead_letters,
            "users": users,
        }
        print("page data, first load (target ≤ 1 s each):")
        for name, work in pages.items():
            print(f"  {name:<13} {_median_seconds(work) * 1000:8.1f} ms")

        key = f"INV-{args.spans // 24}"  # an invoice from the middle of the history

        def lookup() -> None:
            found = find_transactions(engine, key)
            assert found, key
            journey(engine, found[0]["correlation_id"])

        print(
            f"trace-explorer lookup by invoice number: {_median_seconds(lookup) * 1000:.1f} ms "
            "(target ≤ 50 ms)"
        )
        engine.dispose()


if __name__ == "__main__":
    main()

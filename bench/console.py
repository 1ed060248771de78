"""Console benchmark: what each page loads, and how long it takes to show in a browser,
with a large history and a large triage backlog stored.

    python -m bench.console [--spans 10000000] [--exceptions 100000] [--loads 20]
                            [--skip-browser]

History (`bench.background`: spans over 30 days and what they leave behind) and open
exceptions (`bench._console_exceptions`) are generated inside PostgreSQL. Then:

- every page's data load, in-process with database time (median of 5 after a warm-up):
  the exceptions list (count and page of rows; grouped, the groups and a page of the
  largest group's rows) for each view, page and order, target ≤ 300 ms each; every other
  page ≤ 1 s; the trace-explorer lookup ≤ 50 ms;
- unless --skip-browser, each page loaded `--loads` times in headless Chromium as the
  demo's admin, from navigation to its main table or chart visible: median and p95
  (aim ≤ 2 s).
"""

from __future__ import annotations

import argparse
import time

from bench import _console_browser, _console_data
from bench._console_exceptions import store_open_exceptions
from bench._harness import bench_database
from bench.background import SPANS_PER_TRANSACTION, fill
from demo.seed import seed_users
from q2c.database import create_db_engine
from q2c.settings import Settings
from queries.exceptions import ExceptionFilter, count_exceptions
from queries.users import create_user
from sla.policy import load_policy

# The finance-operations team the backlog is spread over, busiest first (beside the demo's
# logins; every owner must be a user).
TEAM = ("finance", *(f"ops{n:02}" for n in range(1, 8)), "oncall")
TEAM_PASSWORD = "q2c-bench-team"  # never used to sign in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--exceptions", type=int, default=100_000, help="open ones to store")
    parser.add_argument("--loads", type=int, default=20, help="browser loads per page")
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()
    policy = load_policy()
    with bench_database() as url:
        engine = create_db_engine(url, Settings(database_url=None))
        logins = {role: (user, password) for user, role, password in seed_users(engine)}
        for username in TEAM:
            if username.startswith("ops"):
                create_user(engine, username, "finance_ops", TEAM_PASSWORD)
        started = time.perf_counter()
        fill(url, args.spans)
        print(f"stored {args.spans:,} spans of history in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        store_open_exceptions(url, args.exceptions, policy, TEAM)
        print(
            f"stored {args.exceptions:,} open exceptions in {time.perf_counter() - started:.0f} s"
            f" ({count_exceptions(engine, ExceptionFilter()):,} open in all)",
            flush=True,
        )
        # An invoice from the middle of the history.
        key = f"INV-{args.spans // SPANS_PER_TRANSACTION // 2}"
        print("page data, in-process with database time (median of 5 after a warm-up):")
        missed = _console_data.report(_console_data.exception_lists(engine, TEAM[0]))
        missed += _console_data.report(_console_data.other_pages(engine, policy, key))
        engine.dispose()
        if not args.skip_browser:
            print(f"page loads in headless Chromium as admin ({args.loads} each):", flush=True)
            missed += _console_browser.report(url, key, logins["admin"], args.loads)
    print(f"{len(missed)} targets missed (MISSED above)" if missed else "every target met")


if __name__ == "__main__":
    main()

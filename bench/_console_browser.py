"""The console as a person sees it: `q2c console` served against a database and each page
loaded in Debian's headless Chromium (never a downloaded browser), timed from navigation to
its main table or chart being visible."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from playwright.sync_api import Page, sync_playwright

from bench._harness import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_DEADLINE = 90  # in seconds
LOAD_TIMEOUT = 60_000  # in milliseconds: a page slower than this fails the benchmark
LOAD_TARGET = 2.0  # in seconds

_CHART = "[data-testid='stPlotlyChart'] .main-svg"
_TABLE = "[data-testid='stDataFrame']"


@dataclass(frozen=True)
class Screen:
    """A console page: its address and what must be visible once it has loaded."""

    name: str
    path: str
    shown: tuple[str, ...]  # CSS selectors, each of whose first match must be visible


def screens(key: str) -> tuple[Screen, ...]:
    """The pages measured; the explorer opened on `key`, as a pasted link opens it."""
    return (
        Screen("overview", "/", (_TABLE, _CHART)),
        Screen("stages", "/stages", (_CHART, _TABLE)),
        Screen(
            "exceptions",
            "/exceptions",
            (".st-key-exceptions_editor [data-testid='stDataFrameResizable']",),
        ),
        Screen("explorer", f"/explorer?q={key}", (_CHART,)),
        Screen(
            "dead letters",
            "/dead_letters",
            (".st-key-dead_letters_editor [data-testid='stDataFrameResizable']",),
        ),
        Screen("audit log", "/audit", (_TABLE,)),
    )


@contextlib.contextmanager
def console_process(url: str) -> Iterator[str]:
    """`q2c console` on a free port reading `url`; yields its address once it is healthy."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="q2c-bench-console-") as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("Q2C_")}
        env |= {"DATABASE_URL": url, "Q2C_CONSOLE_PORT": str(port), "Q2C_DATA_DIR": data_dir}
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "console"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        address = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + STARTUP_DEADLINE
            while True:
                try:
                    with urllib.request.urlopen(f"{address}/_stcore/health", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the console did not start") from None
                    time.sleep(0.3)
            yield address
        finally:
            proc.terminate()
            proc.wait(30)


def _sign_in(tab: Page, address: str, username: str, password: str) -> None:
    tab.goto(address)
    tab.get_by_label("User name").fill(username)
    tab.get_by_role("textbox", name="Password").fill(password)
    tab.get_by_role("button", name="Sign in").click()
    tab.get_by_role("heading", name="Quote-to-cash overview").wait_for()


def _load_seconds(tab: Page, address: str, screen: Screen) -> float:
    """One navigation to `screen` (a full page load: the session resumes by its cookie),
    until each of its selectors shows."""
    started = time.perf_counter()
    tab.goto(address + screen.path)
    for selector in screen.shown:
        tab.locator(selector).first.wait_for(state="visible", timeout=LOAD_TIMEOUT)
    return time.perf_counter() - started


def p95(values: list[float]) -> float:
    """The 95th percentile by nearest rank (of 20 loads: the second slowest)."""
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def report(url: str, key: str, login: tuple[str, str], loads: int) -> list[str]:
    """Load every page `loads` times as `login` (user name, password) and print the first
    load, median and p95; returns the names of the pages whose p95 missed the target."""
    missed = []
    with console_process(url) as address, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        tab.set_default_timeout(LOAD_TIMEOUT)
        _sign_in(tab, address, *login)
        for screen in screens(key):
            timings = [_load_seconds(tab, address, screen) for _ in range(loads)]
            median, slowest = statistics.median(timings), p95(timings)
            met = slowest <= LOAD_TARGET
            if not met:
                missed.append(screen.name)
            print(
                f"  {screen.name:<13} first {timings[0]:6.2f} s  median {median:6.2f} s  "
                f"p95 {slowest:6.2f} s  (p95 ≤ {LOAD_TARGET:g} s: {'met' if met else 'MISSED'})",
                flush=True,
            )
        browser.close()
    return missed

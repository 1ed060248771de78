"""The console as a person sees it: `q2c console` served against a database and each page
loaded in Debian's headless Chromium (never a downloaded browser), timed from navigation to
its main table or chart being visible."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

from playwright.sync_api import Page, sync_playwright

from bench._harness import free_port
from demo.browser import CHROMIUM, CHROMIUM_ARGS, console_process

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
    with console_process(url, free_port()) as address, sync_playwright() as playwright:
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

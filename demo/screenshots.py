"""`python -m demo.screenshots URL`: a screenshot of every console page, for the docs.

Signs in as the demo admin (who sees every page) in Debian's headless Chromium.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import sync_playwright

from demo.browser import CHROMIUM, CHROMIUM_ARGS
from demo.seed import DEMO_USERS

PAGES = {  # link text → file name
    "Overview": "overview",
    "Quote-to-cash stages": "stages",
    "Exceptions": "exceptions",
    "Dead letters & replays": "dead-letters",
    "Trace explorer": "trace-explorer",
    "Alerts": "alerts",
    "Reconciliation": "reconciliation",
    "Users & policies": "admin",
    "Audit log": "audit",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--lookup", default="", help="key to show in the trace explorer")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    user, _, password = next(u for u in DEMO_USERS if u[1] == "admin")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1440, "height": 1100}).new_page()
        page.goto(args.url)
        page.get_by_label("User name").fill(user)
        page.get_by_role("textbox", name="Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Quote-to-cash overview").wait_for()
        for link, name in PAGES.items():
            if name == "trace-explorer" and args.lookup:  # the lookup's own address
                page.goto(f"{args.url}/explorer?{urlencode({'q': args.lookup})}")
            else:
                page.get_by_role("link", name=link, exact=True).click()
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(2500)  # let charts finish drawing before the picture
            page.screenshot(path=args.out / f"{name}.png", full_page=True)
            print(args.out / f"{name}.png")
        browser.close()


if __name__ == "__main__":
    main()

"""The console as a browser meets it: Debian's headless Chromium, started the one way the
project allows (no download, no sandbox, no traffic of its own), and `q2c console` run on
a port for it. Used by the screenshots, the console benchmark and the Chromium tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

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


@contextlib.contextmanager
def console_process(
    database_url: str,
    port: int,
    data_dir: Path | None = None,
    settings: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """`q2c console` on `port` reading `database_url` (its own Q2C_ settings only: none
    inherited; its data in `data_dir`, else a temporary one); yields its address once it
    answers its health check."""
    if data_dir is None:
        with (
            tempfile.TemporaryDirectory(prefix="q2c-console-") as temporary,
            console_process(database_url, port, Path(temporary), settings) as address,
        ):
            yield address
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("Q2C_")}
    env |= {
        "DATABASE_URL": database_url,
        "Q2C_CONSOLE_PORT": str(port),
        "Q2C_DATA_DIR": str(data_dir),
        **(settings or {}),
    }
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

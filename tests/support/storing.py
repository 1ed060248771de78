"""Storing batches through the collector's writer as a client of the collector would."""

from __future__ import annotations

import threading

from collectors.batch import Batch
from collectors.writer import PostgresWriter, StatementFailed
from sla.policy import load_policy

_ATTEMPTS = 8


def store_as_client(url: str, batches: list[Batch], start: threading.Barrier | None = None) -> None:
    """Write each batch in turn, again after a failure a client sees as 503, until it is
    stored; with `start`, only once every thread sharing it is ready."""
    writer = PostgresWriter(url, load_policy().catalog())
    if start is not None:
        start.wait()
    try:
        for batch in batches:
            for attempt in range(_ATTEMPTS):
                try:
                    writer.write(batch)
                    break
                except StatementFailed:
                    if attempt == _ATTEMPTS - 1:
                        raise
    finally:
        writer.close()

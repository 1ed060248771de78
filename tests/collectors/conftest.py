"""Collector fixtures: a running collector on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from q2c.settings import Settings
from tests.support.services import running_collector


@pytest.fixture
def settings() -> Settings:
    """Collector settings for tests: quick Retry-After, defaults otherwise."""
    return Settings(database_url=None, retry_after_seconds=1)


@pytest.fixture
def collector_url(settings: Settings, db_url: str) -> Iterator[str]:
    """Base URL of a collector writing into the test's fresh database."""
    with running_collector(settings, db_url) as url:
        yield url


@pytest.fixture
def http(collector_url: str) -> Iterator[httpx.Client]:
    """An HTTP client aimed at the running collector."""
    with httpx.Client(base_url=collector_url, timeout=30) as client:
        yield client

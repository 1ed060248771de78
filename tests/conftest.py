"""Shared fixtures: a real PostgreSQL server and throwaway databases on it.

With DATABASE_URL set the tests use that server; without it they start the embedded one.
Every test database is created here and dropped after the session or the test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import Engine

from q2c import migrate
from q2c.database import create_db_engine, libpq_url
from q2c.embedded import EmbeddedPostgres
from q2c.settings import Settings

_names = itertools.count()


def _admin_execute(server_url: str, statement: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)


def _with_dbname(server_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a maintenance database on the PostgreSQL server the tests run against."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield libpq_url(configured)
        return
    with EmbeddedPostgres(tmp_path_factory.mktemp("embedded") / "pgdata") as server:
        assert server.url is not None
        yield server.url


@pytest.fixture(scope="session")
def create_database(pg_server: str) -> Iterator[Callable[..., str]]:
    """Factory of throwaway databases (optionally from a template); all dropped at the end."""
    created: list[str] = []

    def create(template: str | None = None) -> str:
        name = f"q2c_test_{os.getpid()}_{next(_names)}"
        clause = f' TEMPLATE "{template}"' if template else ""
        _admin_execute(pg_server, f'CREATE DATABASE "{name}"{clause}')
        created.append(name)
        return name

    yield create
    for name in reversed(created):
        _admin_execute(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_template(pg_server: str, create_database: Callable[..., str]) -> str:
    """A database migrated to head once per session, cloned for each test that needs one."""
    name = create_database()
    migrate.upgrade(_with_dbname(pg_server, name))
    return name


@pytest.fixture
def empty_db(pg_server: str, create_database: Callable[..., str]) -> str:
    """URL of a brand-new empty database."""
    return _with_dbname(pg_server, create_database())


@pytest.fixture
def new_db_url(
    pg_server: str, create_database: Callable[..., str], migrated_template: str
) -> Callable[[], str]:
    """Factory of fresh databases at the head migration, with no partitions yet."""
    return lambda: _with_dbname(pg_server, create_database(template=migrated_template))


@pytest.fixture
def db_url(new_db_url: Callable[[], str]) -> str:
    """URL of a fresh database at the head migration, with no partitions yet."""
    return new_db_url()


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit psycopg connection to a fresh migrated database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A SQLAlchemy engine on a fresh migrated database."""
    engine = create_db_engine(db_url, Settings(database_url=None))
    yield engine
    engine.dispose()

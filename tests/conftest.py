"""Shared fixtures: a real PostgreSQL server and throwaway databases on it.

With DATABASE_URL set the tests use that server; without it they start the embedded one.
Every test database is created here and dropped after the session; the session's runtime
role too. Tests act as the product does: migrations as the owner (the server's user), all
else as the runtime role, which `q2c migrate` grants its privileges.
"""

from __future__ import annotations

import itertools
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from q2c import migrate
from q2c.database import DatabaseUrls, create_db_engine
from q2c.embedded import EmbeddedPostgres
from q2c.privileges import grant_runtime_role
from q2c.settings import Settings
from q2c.urls import libpq_url

# Fixtures of more than one folder: replay targets, users, tokens, dead letters; sending
# scenarios through a collector, evaluating them and reading the KPIs.
pytest_plugins = [
    "tests.support.fixtures",
    "tests.support.evaluation",
    "tests.support.compiled",
    "tests.support.reconciling",
]

_names = itertools.count()


def _admin_execute(server_url: str, statement: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)


def _with_dbname(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a maintenance database on the PostgreSQL server the tests run against."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield libpq_url(configured)
        return
    # Not under pytest's basetemp: the server runs as another user (root may not run it),
    # reaching its folder through the parents pgserver opens to it, and every pytest
    # session that starts on the machine closes pytest-of-<user> to others again.
    with (
        tempfile.TemporaryDirectory(prefix="q2c-test-pg-") as folder,
        EmbeddedPostgres(Path(folder) / "pgdata") as server,
    ):
        assert server.url is not None
        yield server.url


@pytest.fixture(scope="session")
def app_role(pg_server: str) -> Iterator[tuple[str, str]]:
    """The session's runtime role: (name, password); dropped after every test database."""
    name, password = f"q2c_test_app_{os.getpid()}", secrets.token_hex(16)
    role = sql.Identifier(name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password))
        )
    yield name, password
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))


@pytest.fixture(scope="session")
def create_database(pg_server: str, app_role: tuple[str, str]) -> Iterator[Callable[..., str]]:
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
def migrated_template(
    pg_server: str, create_database: Callable[..., str], app_role: tuple[str, str]
) -> str:
    """A database migrated to head once per session, its runtime role granted, cloned for
    each test that needs one."""
    name = create_database()
    owner = _with_dbname(pg_server, name)
    migrate.upgrade(owner)
    assert grant_runtime_role(owner, app_role[0]) == []
    return name


@pytest.fixture
def empty_db(pg_server: str, create_database: Callable[..., str]) -> str:
    """URL of a brand-new empty database."""
    return _with_dbname(pg_server, create_database())


@pytest.fixture
def new_database(
    pg_server: str,
    create_database: Callable[..., str],
    migrated_template: str,
    app_role: tuple[str, str],
) -> Callable[[], DatabaseUrls]:
    """Factory of fresh databases at the head migration, with no partitions yet: the URLs
    of the runtime role and of the owner."""

    def create() -> DatabaseUrls:
        owner = _with_dbname(pg_server, create_database(template=migrated_template))
        name, password = app_role
        runtime = make_url(owner).set(username=name, password=password)
        return DatabaseUrls(runtime.render_as_string(hide_password=False), owner)

    return create


@pytest.fixture
def new_db_url(new_database: Callable[[], DatabaseUrls]) -> Callable[[], str]:
    """Factory of fresh databases (see new_database); returns the runtime role's URL."""
    return lambda: new_database().runtime


@pytest.fixture
def test_database(new_database: Callable[[], DatabaseUrls]) -> DatabaseUrls:
    """A fresh database at the head migration, with no partitions yet."""
    return new_database()


@pytest.fixture
def db_url(test_database: DatabaseUrls) -> str:
    """The runtime role's URL of the test's fresh database."""
    return test_database.runtime


@pytest.fixture
def owner_db_url(test_database: DatabaseUrls) -> str:
    """The schema owner's URL of the test's fresh database (for what only an owner may)."""
    return test_database.migration


@pytest.fixture
def owner_db(owner_db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's database as the schema's owner."""
    with psycopg.connect(owner_db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit psycopg connection to the test's database, as the runtime role."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A SQLAlchemy engine on a fresh migrated database."""
    engine = create_db_engine(db_url, Settings(database_url=None))
    yield engine
    engine.dispose()

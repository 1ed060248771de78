"""Database access for every Q2C process: which server and which role, and a pooled
SQLAlchemy engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine

from q2c.embedded import EmbeddedPostgres
from q2c.settings import Settings
from q2c.urls import libpq_url, sqlalchemy_url, with_user


def create_db_engine(url: str, settings: Settings) -> Engine:
    """A pooled engine on psycopg 3; connections are checked before use so a restart heals."""
    return create_engine(
        sqlalchemy_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        connect_args={"connect_timeout": settings.db_connect_timeout},
    )


@dataclass(frozen=True)
class DatabaseUrls:
    """Where to connect: `runtime` for every process's work, `migration` as the owner of
    the schema, for migrations and the first admin."""

    runtime: str
    migration: str


@contextmanager
def database_urls(settings: Settings) -> Iterator[DatabaseUrls]:
    """The configured database's URLs, or an embedded server's, started here and stopped on
    exit (its runtime role connects without a password over its private socket)."""
    if settings.database_url is not None:
        runtime = libpq_url(settings.database_url.get_secret_value())
        owner = settings.migration_database_url or settings.database_url
        yield DatabaseUrls(runtime, libpq_url(owner.get_secret_value()))
        return
    with EmbeddedPostgres(settings.pgdata_dir, settings.app_role) as server:
        assert server.url is not None
        yield DatabaseUrls(with_user(server.url, settings.app_role), server.url)


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The runtime URL of `database_urls`."""
    with database_urls(settings) as urls:
        yield urls.runtime

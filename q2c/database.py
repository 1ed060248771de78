"""Database access for every Q2C process: which server, and a pooled SQLAlchemy engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url

from q2c.embedded import EmbeddedPostgres
from q2c.settings import Settings


def sqlalchemy_url(url: str) -> URL:
    """`url` with SQLAlchemy's psycopg 3 driver, whatever dialect spelling it came with."""
    return make_url(url).set(drivername="postgresql+psycopg")


def libpq_url(url: str) -> str:
    """`url` as a plain libpq connection string, for psycopg and for child processes."""
    return sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


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


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured server's URL, or an embedded server's, started here and stopped on exit."""
    if settings.database_url is not None:
        yield libpq_url(settings.database_url.get_secret_value())
        return
    with EmbeddedPostgres(settings.pgdata_dir) as server:
        assert server.url is not None
        yield server.url

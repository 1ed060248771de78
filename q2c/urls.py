"""Database URLs in the spellings each consumer wants."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url


def sqlalchemy_url(url: str) -> URL:
    """`url` with SQLAlchemy's psycopg 3 driver, whatever dialect spelling it came with."""
    return make_url(url).set(drivername="postgresql+psycopg")


def libpq_url(url: str) -> str:
    """`url` as a plain libpq connection string, for psycopg and for child processes."""
    return sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_user(url: str, user: str) -> str:
    """`url` connecting as `user` (without a password: for servers that trust it)."""
    return make_url(url).set(username=user, password=None).render_as_string(hide_password=False)

"""Apply and inspect the schema migrations (Alembic) against a Q2C database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from q2c.urls import sqlalchemy_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Serialises concurrent `q2c migrate` runs (e.g. several collectors starting at once).
_MIGRATION_LOCK_KEY = 0x51_32_43_4D


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at our migrations, without needing an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = sqlalchemy_url(url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate up to `revision`; returns (before, after). Running it again is a no-op."""
    return _run(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str) -> tuple[str | None, str | None]:
    """Migrate down to `revision` ("base" removes the whole schema); returns (before, after)."""
    return _run(url, lambda config: command.downgrade(config, revision))


def _run(url: str, action: Callable[[Config], None]) -> tuple[str | None, str | None]:
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                before = MigrationContext.configure(conn).get_current_revision()
                config = alembic_config(url)
                config.attributes["connection"] = conn
                action(config)
                conn.commit()
                after = MigrationContext.configure(conn).get_current_revision()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()
    return before, after

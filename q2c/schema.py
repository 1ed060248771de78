"""Getting a database ready for Q2C: migrations, then the partitions telemetry lands in."""

from __future__ import annotations

from datetime import date

import psycopg

from q2c import migrate
from q2c.database import libpq_url
from q2c.errors import Q2CError, first_line
from q2c.settings import Settings


def prepare_database(url: str, settings: Settings) -> tuple[str | None, str | None, list]:
    """Migrate to head and maintain partitions; returns (before, after, partition actions)."""
    try:
        before, after = migrate.upgrade(url)
    except Exception as exc:
        raise Q2CError(f"could not migrate the database: {first_line(exc)}") from None
    partitions = maintain_partitions(url, settings.retention_days, settings.partitions_ahead_days)
    return before, after, partitions


def maintain_partitions(
    url: str, retention_days: int, days_ahead: int, today: date | None = None
) -> list[tuple[str, str]]:
    """Create the daily partitions up to `days_ahead` and drop those past retention.

    Returns (action, partition name) pairs; an empty list when nothing needed doing.
    """
    query = "SELECT action, partition_name FROM q2c_maintain_partitions(%s, %s"
    params: tuple = (retention_days, days_ahead)
    if today is not None:
        query += ", %s"
        params += (today,)
    with psycopg.connect(libpq_url(url)) as conn:
        return [tuple(row) for row in conn.execute(query + ")", params).fetchall()]

"""Getting a database ready for Q2C: migrations and the runtime role's privileges (as the
schema's owner), then the partitions telemetry lands in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import psycopg

from q2c import migrate
from q2c.database import DatabaseUrls
from q2c.errors import Q2CError, first_line
from q2c.privileges import grant_runtime_role, may_act_as_owner
from q2c.settings import Settings
from q2c.urls import libpq_url


@dataclass
class Preparation:
    """What `prepare_database` did."""

    before: str | None
    after: str | None
    partitions: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # with the runtime role, in words


def prepare_database(urls: DatabaseUrls, settings: Settings) -> Preparation:
    """As the owner: migrate to head, grant the runtime role (Q2C_APP_ROLE) its privileges,
    record the partition limits and maintain partitions. Given only the runtime role's
    credentials, it checks that the schema is current and leaves the rest as it is."""
    try:
        before, after = migrate.upgrade(urls.migration)
        owner = may_act_as_owner(urls.migration)
        problems = (
            grant_runtime_role(urls.migration, settings.app_role)
            if owner
            else [
                "not connected as the schema's owner: the runtime role's privileges and the "
                "partition limits are left as they are (set Q2C_MIGRATION_DATABASE_URL to change "
                "them)"
            ]
        )
    except Exception as exc:
        hint = (
            " (migrations need the schema owner's credentials: Q2C_MIGRATION_DATABASE_URL)"
            if isinstance(getattr(exc, "orig", exc), psycopg.errors.InsufficientPrivilege)
            else ""
        )
        raise Q2CError(f"could not migrate the database: {first_line(exc)}{hint}") from None
    if owner:
        record_partition_limits(
            urls.migration, settings.retention_days, settings.partitions_ahead_days
        )
    return Preparation(before, after, maintain_configured_partitions(urls.migration), problems)


def record_partition_limits(url: str, retention_days: int, days_ahead: int) -> None:
    """As the owner: the retention and days ahead that partition maintenance keeps to (the
    runtime role reads them, and cannot change them)."""
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(
            "UPDATE q2c_settings SET retention_days = %s, partitions_ahead_days = %s",
            (retention_days, days_ahead),
        )


def maintain_configured_partitions(url: str) -> list[tuple[str, str]]:
    """Create today's partitions and those of the days ahead, drop those past retention, as
    `record_partition_limits` set them; (action, partition name) pairs, empty when nothing
    needed doing. The runtime role may do this."""
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute("SELECT action, partition_name FROM q2c_maintain_partitions()")
        return [tuple(row) for row in rows.fetchall()]


def maintain_partitions(
    url: str, retention_days: int, days_ahead: int, today: date | None = None
) -> list[tuple[str, str]]:
    """As the owner: create the daily partitions up to `days_ahead` after `today` and drop
    those past retention; (action, partition name) pairs, empty when nothing needed doing."""
    query = "SELECT action, partition_name FROM q2c_maintain_partitions(%s, %s"
    params: tuple = (retention_days, days_ahead)
    if today is not None:
        query += ", %s"
        params += (today,)
    with psycopg.connect(libpq_url(url)) as conn:
        return [tuple(row) for row in conn.execute(query + ")", params).fetchall()]

"""Every Q2C setting in one place: its environment variable, default and unit.

Resolution order, everywhere: explicit argument, then environment variable, then the
default below. Secrets are `SecretStr` so they never print by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from q2c.errors import Q2CError

ENV_PREFIX = "Q2C_"


class Settings(BaseSettings):
    """Effective configuration of one Q2C process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, populate_by_name=True, extra="forbid", frozen=True
    )

    database_url: SecretStr | None = Field(
        default=None,
        validation_alias="DATABASE_URL",
        description="PostgreSQL database every process connects to, as the runtime role "
        "(Q2C_APP_ROLE); unset starts the embedded server.",
    )
    migration_database_url: SecretStr | None = Field(
        default=None,
        description="The same database as its schema's owner, for `q2c migrate` and the first "
        "admin; unset uses DATABASE_URL.",
    )
    app_role: str = Field(
        default="q2c_app",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="The runtime role `q2c migrate` grants exactly what the product needs "
        "(created if missing where the owner may).",
    )
    data_dir: Path = Field(
        default=Path(".q2c"),
        description="Folder for local state; the embedded server keeps its data in pgdata/.",
    )
    retention_days: int = Field(
        default=30, ge=1, le=3650, description="Days of spans and logs kept (in days)."
    )
    partitions_ahead_days: int = Field(
        default=3, ge=1, le=60, description="Daily partitions created ahead of today (in days)."
    )
    db_pool_size: int = Field(
        default=5, ge=1, le=200, description="Connections kept open per process."
    )
    db_pool_timeout: float = Field(
        default=10.0, gt=0, description="Wait for a free pooled connection (in seconds)."
    )
    db_connect_timeout: int = Field(
        default=5, ge=1, le=300, description="Wait for a new database connection (in seconds)."
    )
    console_host: str = Field(
        default="127.0.0.1", description="Address the Streamlit console listens on."
    )
    console_port: int = Field(
        default=8501, ge=1, le=65535, description="Port the Streamlit console listens on."
    )
    client_address_header: str = Field(
        default="",
        description="Behind a reverse proxy: the header (X-Forwarded-For, say) whose last "
        "address is the browser's, for sign-in limits and the audit log; empty uses the "
        "connection's address.",
    )
    session_hours: int = Field(
        default=12,
        ge=1,
        le=24 * 30,
        description="How long a console sign-in lasts (hours) across reloads and new tabs, "
        "unless the user signs out, is disabled or changes role.",
    )
    collector_host: str = Field(
        default="127.0.0.1", description="Address the OTLP/HTTP collector listens on."
    )
    collector_port: int = Field(
        default=4318, ge=1, le=65535, description="Port the OTLP/HTTP collector listens on."
    )
    collector_workers: int = Field(
        default=1, ge=1, le=64, description="Collector worker processes (count)."
    )
    ingest_tokens: SecretStr | None = Field(
        default=None,
        description="Comma-separated bearer tokens the collector accepts; unset allows only "
        "loopback clients.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body, also after decompression (in bytes).",
    )
    body_read_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Longest wait for a request's headers (then the connection is closed) "
        "and for its whole body (then 408) (in seconds).",
    )
    max_inflight: int = Field(
        default=64, ge=1, le=10_000, description="Requests admitted at once before 429 (count)."
    )
    retry_after_seconds: int = Field(
        default=5, ge=1, le=3600, description="Retry-After sent with 429 and 503 (in seconds)."
    )
    max_future_seconds: int = Field(
        default=3600,
        ge=0,
        description="How far ahead of now a record's timestamp may lie (in seconds).",
    )
    writer_connections: int = Field(
        default=2, ge=1, le=32, description="Database connections writing telemetry (count)."
    )
    group_commit_records: int = Field(
        default=16_384,
        ge=1,
        description="Most spans and log records written in one transaction (count).",
    )
    decoder: Literal["auto", "compiled", "python"] = Field(
        default="auto",
        description="How the collector reads OTLP protobuf: auto (the compiled reader when "
        "the install built it), compiled (refuse to start without it) or python (the "
        "protobuf runtime alone).",
    )
    attribute_map: Path | None = Field(
        default=None,
        description="YAML file mapping your attribute keys onto Q2C's fields.",
    )
    evaluate_interval_seconds: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="How often the scheduler evaluates SLAs (in seconds).",
    )
    replay_allowed_hosts: str = Field(
        default="",
        description="Comma-separated hosts (or host:port) replays may be sent to; empty "
        "refuses every replay.",
    )
    replay_header_allowlist: str = Field(
        default="content-type,accept,x-request-id,x-tenant-id,x-correlation-id",
        description="Comma-separated stored headers a replay passes on (case-insensitive).",
    )
    replay_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Timeout of one replay delivery (in seconds)."
    )
    replay_max_attempts: int = Field(
        default=5, ge=1, le=50, description="Delivery attempts before a replay fails (count)."
    )
    replay_backoff_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay, doubled per attempt (in seconds)."
    )
    replay_deadline_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="A replay not delivered this long after its request fails, rather than "
        "arrive late (in seconds).",
    )
    replay_rate_per_host: float = Field(
        default=5.0, gt=0, description="Replays sent per second to one target host."
    )
    mask_keys: str = Field(
        default="",
        description="Comma-separated key patterns whose values are masked on every surface, "
        "besides the built-in ones (docs/security.md); words in any spelling: api_key also "
        "masks apiKey and X-API-Key.",
    )
    demo_sandbox_port: int = Field(
        default=8701, ge=1, le=65535, description="Port of the demo's fake CRM/billing/ERP."
    )
    demo_rate: float = Field(
        default=1.0, gt=0, le=100, description="Live demo transactions per second."
    )
    sla_config: Path | None = Field(
        default=None,
        description="sla.yaml with the process catalog and SLA policies; unset uses the "
        "shipped seed.",
    )
    alerts_config: Path | None = Field(
        default=None,
        description="alerts.yaml with notification channels, routes and ownership rules; "
        "unset uses the shipped example, whose channels point at loopback addresses.",
    )
    reconcile_config: Path | None = Field(
        default=None,
        description="reconcile.yaml with the reconciliations against the systems of record; "
        "unset runs none (the shipped example documents the keys).",
    )
    alerts_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Days the alerting outbox, notification groups, notification log and "
        "ended silences are kept once done (in days); never a pending delivery, an open "
        "group or an active silence.",
    )
    reconcile_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Days reconciliation runs and the breaks they recorded are kept (in days); "
        "each reconciliation's latest succeeded run is kept whatever its age.",
    )
    log_level: str = Field(default="INFO", description="Python logging level of Q2C processes.")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        url = value.get_secret_value()
        parts = urlsplit(url) if "://" in url else None
        if parts is None or not parts.scheme:
            raise ValueError("is not a database URL (postgresql://user@host:5432/db)")
        if not parts.scheme.startswith(("postgresql", "postgres")):
            raise ValueError(f"must be a postgresql:// URL, not {parts.scheme}://")
        try:
            parts.port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ValueError("has a port that is not a number from 1 to 65535") from None
        return value

    @property
    def tokens(self) -> list[str]:
        """The accepted ingest tokens (empty when none are configured)."""
        return comma_list(self.ingest_tokens.get_secret_value() if self.ingest_tokens else "")

    @property
    def allowed_replay_hosts(self) -> frozenset[str]:
        """Hosts (lower-case, optionally with :port) replays may target."""
        return frozenset(host.lower() for host in comma_list(self.replay_allowed_hosts))

    @property
    def replay_headers(self) -> frozenset[str]:
        """Stored headers (lower-case) a replay passes on."""
        return frozenset(name.lower() for name in comma_list(self.replay_header_allowlist))

    @property
    def mask_key_list(self) -> list[str]:
        """The key patterns of Q2C_MASK_KEYS."""
        return comma_list(self.mask_keys)

    @property
    def pgdata_dir(self) -> Path:
        """Where the embedded PostgreSQL keeps its files."""
        return self.data_dir.expanduser().resolve() / "pgdata"


def comma_list(value: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated setting."""
    return [item.strip() for item in value.split(",") if item.strip()]


def env_name(field: str) -> str:
    """The environment variable that sets `field`."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning validation failures into one message naming each bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            name = env_name(field) if field in Settings.model_fields else field
            value = error.get("input")
            shown = "" if isinstance(value, dict) or "url" in field.lower() else f" (got {value!r})"
            problems.append(f"{name}: {error['msg']}{shown}")
        raise Q2CError("invalid settings:\n  " + "\n  ".join(problems)) from None


def masked_url(url: str) -> str:
    """A database URL with its passwords (in user:password@, ?password= or another query
    parameter naming one, such as libpq's sslpassword) replaced by ***."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        parts = parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{host}")
    query = "&".join(
        f"{name}=***" if name.lower().endswith("password") else pair
        for pair in parts.query.split("&")
        if pair
        for name in [pair.partition("=")[0]]
    )
    return urlunsplit(parts._replace(query=query))


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(environment variable, effective value with secrets masked, description) per setting."""
    rows = []
    for field, info in Settings.model_fields.items():
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            shown = masked_url(secret) if field.endswith("database_url") else "***"
        elif value is None:
            shown = {
                "database_url": "(unset: embedded PostgreSQL)",
                "migration_database_url": "(unset: DATABASE_URL)",
            }.get(field, "(unset)")
        else:
            shown = str(value)
        rows.append((env_name(field), shown, info.description or ""))
    return rows

"""What alerts.yaml holds, as typed records: channels, ownership rules, routes, escalations,
digests and maintenance windows. Reading the file and naming the key of each mistake is
`alerts.load`'s job; these records only say what a valid file is.

Secrets are never in the file: a channel names the environment variable that holds its
secret (`secret_env`, `routing_key_env`, `url_env`, `password_env`).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from alerts.events import DigestContent, EventType, GroupKey
from q2c.config_types import EnvName, HttpUrl
from q2c.cron import cron_trigger
from q2c.durations import Duration
from q2c.vocabulary import ExceptionKind, Impact

T = TypeVar("T")

DEFAULT_TIMEOUT = timedelta(seconds=10)  # of one delivery attempt to a channel
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
CHANNEL_TYPES = ("webhook", "pagerduty", "email", "slack")


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


# `impact: critical` and `impact: [critical, high]` alike: a list holds if any value does.
OneOrMany = Annotated[tuple[T, ...], BeforeValidator(_listed), Field(min_length=1)]


def _address(value: str) -> str:
    _, address = parseaddr(value)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", address):
        raise ValueError(f"{value!r} is not an email address")
    return value


def _host_port(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port (e.g. smtp.example.com:587)")
    return value


def _cron(value: str) -> str:
    try:
        cron_trigger(value, UTC)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a cron schedule: {exc}") from None
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone (e.g. UTC, Europe/Paris)") from None
    return value


Address = Annotated[str, AfterValidator(_address)]
Cron = Annotated[str, AfterValidator(_cron)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine: traffic to it never crosses a network."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Strict(BaseModel):
    # Keys only by their names in the file (`from`, `continue`), never by the Python ones.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExceptionMatch(_Strict):
    """Conditions on an exception: every key given must hold; a list holds if any of its
    values does; no key at all holds for everything."""

    kind: OneOrMany[ExceptionKind] | None = None
    impact: OneOrMany[Impact] | None = None
    process: OneOrMany[str] | None = None
    stage: OneOrMany[str] | None = None
    system: OneOrMany[str] | None = None

    def describe(self) -> str:
        """`process=invoice_posting system=erp`, `impact=critical|high`, or `everything`."""
        given = [(key, values) for key, values in self if values is not None]
        given.sort(key=lambda item: item[0] != "event")  # what happened, then to what
        return " ".join(f"{key}={'|'.join(values)}" for key, values in given) or "everything"


class EventMatch(ExceptionMatch):
    """ExceptionMatch, and which events (`exception.opened`, `slo.alert`, …)."""

    event: OneOrMany[EventType] | None = None


class _Channel(_Strict):
    timeout: Duration = DEFAULT_TIMEOUT

    def secret_variables(self) -> dict[str, str]:
        """What the channel needs from the environment: purpose → variable name."""
        return {}


class WebhookChannel(_Channel):
    """CloudEvents 1.0 JSON POSTed to `url`, signed as Standard Webhooks 1.0 specifies with
    the `whsec_…` secret held by the variable `secret_env`."""

    type: Literal["webhook"]
    url: HttpUrl
    secret_env: EnvName

    def secret_variables(self) -> dict[str, str]:
        return {"signing secret": self.secret_env}

    def describe(self) -> str:
        return f"{self.url}, signed with ${self.secret_env}"


class PagerDutyChannel(_Channel):
    """PagerDuty Events API v2 at `url`, with the routing key held by `routing_key_env`."""

    type: Literal["pagerduty"]
    url: HttpUrl = PAGERDUTY_EVENTS_URL
    routing_key_env: EnvName

    def secret_variables(self) -> dict[str, str]:
        return {"routing key": self.routing_key_env}

    def describe(self) -> str:
        return f"{self.url}, routing key ${self.routing_key_env}"


class EmailChannel(_Channel):
    """Mail from `from` to `to` through the SMTP server `smtp` (host:port); with
    `to_owner`, an assignment's mail also to its owner's address (the users table's, as
    it is when the mail is sent), or to them alone when `to` is not given."""

    type: Literal["email"]
    smtp: Annotated[str, AfterValidator(_host_port)]
    sender: Address = Field(alias="from")
    to: OneOrMany[Address] = ()
    to_owner: bool = False
    # starttls: upgrade a plain connection (port 587); tls: TLS from the first byte (465).
    security: Literal["starttls", "tls", "none"] | None = None
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    ca_file: Path | None = None  # trust these certificates instead of the system's

    @property
    def host(self) -> str:
        return self.smtp.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.smtp.rpartition(":")[2])

    @property
    def effective_security(self) -> Literal["starttls", "tls", "none"]:
        """`security`, else TLS on port 465, none to a relay on this machine (mail to it
        never crosses a network), STARTTLS everywhere else."""
        if self.security is not None:
            return self.security
        if self.port == 465:
            return "tls"
        return "none" if is_loopback(self.host) else "starttls"

    @model_validator(mode="after")
    def _someone_to_tell(self) -> EmailChannel:
        if not self.to and not self.to_owner:
            raise ValueError("give `to` (addresses), or `to_owner: true`, or both")
        return self

    @model_validator(mode="after")
    def _safe_login(self) -> EmailChannel:
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("username_env and password_env go together")
        if self.username_env and self.effective_security == "none" and not is_loopback(self.host):
            raise ValueError(
                "a login with security: none would send the password unencrypted; "
                "use starttls or tls"
            )
        return self

    def secret_variables(self) -> dict[str, str]:
        if self.username_env and self.password_env:
            return {"SMTP user name": self.username_env, "SMTP password": self.password_env}
        return {}

    def describe(self) -> str:
        login = f", login ${self.username_env}" if self.username_env else ""
        security = {"starttls": "STARTTLS", "tls": "TLS", "none": "no TLS"}
        recipients = [*self.to, *(["the owner of an assignment"] if self.to_owner else [])]
        return (
            f"{self.sender} → {', '.join(recipients)} via {self.smtp} "
            f"({security[self.effective_security]}{login})"
        )


class SlackChannel(_Channel):
    """A Slack incoming webhook, whose URL (itself the secret) `url_env` holds."""

    type: Literal["slack"]
    url_env: EnvName

    def secret_variables(self) -> dict[str, str]:
        return {"webhook URL": self.url_env}

    def describe(self) -> str:
        return f"incoming webhook ${self.url_env}"


ChannelConfig = Annotated[
    WebhookChannel | PagerDutyChannel | EmailChannel | SlackChannel,
    Field(discriminator="type"),
]


class OwnerRule(_Strict):
    """`owner` (a console user name) is assigned new exceptions matching `match`."""

    match: ExceptionMatch
    owner: str = Field(min_length=1)


class Route(_Strict):
    """Notify `to` of events matching `match`, grouped by `group_by` with Alertmanager's
    timers; `continue: false` stops the search at this route."""

    match: EventMatch = EventMatch()
    to: OneOrMany[str]
    group_by: tuple[GroupKey, ...] = ()
    group_wait: Duration = timedelta(seconds=30)
    group_interval: Duration = timedelta(minutes=5)
    repeat_interval: Duration = timedelta(hours=4)
    continue_: bool = Field(default=True, alias="continue")


class Escalation(_Strict):
    """Notify `to` of an exception matching `match` still unacknowledged (neither assigned
    nor in progress) `unacknowledged_after` it was opened."""

    match: ExceptionMatch = ExceptionMatch()
    unacknowledged_after: Duration
    to: OneOrMany[str]


class Digest(_Strict):
    """A report (`content`) sent to `to` on the cron `schedule`."""

    name: Name
    schedule: Cron
    to: OneOrMany[str]
    content: DigestContent


class Maintenance(_Strict):
    """A recurring window, starting on the cron `schedule` and lasting `duration`, during
    which notifications matching `match` are suppressed (the exceptions still are opened)."""

    name: Name
    match: EventMatch = EventMatch()
    schedule: Cron
    duration: Duration


class AlertsConfig(_Strict):
    """Everything alerts.yaml holds."""

    # Where the console is seen from, for links in messages; default from
    # Q2C_CONSOLE_HOST and Q2C_CONSOLE_PORT (alerts.links.console_base).
    console_url: HttpUrl | None = None
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"  # of the cron schedules
    channels: dict[Name, ChannelConfig] = {}
    owners: tuple[OwnerRule, ...] = ()
    routes: tuple[Route, ...] = ()
    escalations: tuple[Escalation, ...] = ()
    digests: tuple[Digest, ...] = ()
    maintenance: tuple[Maintenance, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

"""What `q2c alerts check` adds to a valid file: whether this environment holds what the
channels need. A variable that is not set is a warning (the file may be checked where the
secrets are not kept); one set to something unusable is an error. Values are never shown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from alerts.channels.slack import check_webhook_url
from alerts.config import AlertsConfig, EmailChannel, SlackChannel, WebhookChannel
from alerts.signing import parse_secret


@dataclass(frozen=True)
class Finding:
    """One thing wrong with the environment, at the key path of the channel concerned."""

    level: Literal["error", "warning"]
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


def environment_findings(config: AlertsConfig, environ: Mapping[str, str]) -> list[Finding]:
    """Secrets missing or malformed, and unreadable CA files, channel by channel."""
    findings = []
    for name, channel in config.channels.items():
        where = f"channels.{name}"
        for purpose, variable in channel.secret_variables().items():
            value = environ.get(variable, "")
            if not value:
                findings.append(
                    Finding(
                        "warning",
                        where,
                        f"${variable} ({purpose}) is not set: the channel cannot deliver",
                    )
                )
                continue
            try:
                if isinstance(channel, WebhookChannel):
                    parse_secret(value)
                elif isinstance(channel, SlackChannel):
                    check_webhook_url(value)
            except ValueError as exc:
                findings.append(Finding("error", where, f"${variable} ({purpose}) {exc}"))
        ca_file = channel.ca_file if isinstance(channel, EmailChannel) else None
        if ca_file is not None and not ca_file.is_file():
            findings.append(Finding("error", f"{where}.ca_file", f"no file {ca_file}"))
    return findings

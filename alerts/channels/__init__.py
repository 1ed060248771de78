"""The channel implementations, one module a protocol, and opening one by its name."""

from __future__ import annotations

import os
from collections.abc import Mapping

from alerts.channel import Channel
from alerts.channels.email import EmailChannel
from alerts.channels.pagerduty import PagerDutyChannel
from alerts.channels.slack import SlackChannel
from alerts.channels.webhook import WebhookChannel
from alerts.config import AlertsConfig
from alerts.config import EmailChannel as EmailConfig
from alerts.config import PagerDutyChannel as PagerDutyConfig
from alerts.config import SlackChannel as SlackConfig
from q2c.errors import Q2CError


def open_channel(
    config: AlertsConfig,
    name: str,
    console_url: str,
    environ: Mapping[str, str] = os.environ,
) -> Channel:
    """The channel `name` of `config`, its secrets read from `environ` now; `console_url`
    names this Q2C to receivers that ask (a CloudEvent's `source`). Q2CError when no
    channel has that name."""
    if name not in config.channels:
        known = ", ".join(config.channels) or "none are configured"
        raise Q2CError(f"no channel named {name!r} (channels: {known})")
    settings = config.channels[name]
    if isinstance(settings, SlackConfig):
        return SlackChannel(name, settings, environ)
    if isinstance(settings, EmailConfig):
        return EmailChannel(name, settings, environ)
    if isinstance(settings, PagerDutyConfig):
        return PagerDutyChannel(name, settings, environ)
    return WebhookChannel(name, settings, environ, console_url)

"""alerts.yaml is validated on load: the issue's example loads as written, and every kind of
mistake is reported by the path of its key."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.config import (
    AlertsConfig,
    Digest,
    EmailChannel,
    Escalation,
    EventMatch,
    Maintenance,
    OwnerRule,
    PagerDutyChannel,
    Route,
    SlackChannel,
    WebhookChannel,
)
from alerts.events import EVENT_TYPES
from alerts.load import (
    DEFAULT_CONFIG_FILE,
    InvalidAlertsConfig,
    load_alerts_config,
    parse_alerts_config,
)
from q2c.cron import next_run
from q2c.errors import Q2CError

# Issue #17's example, exactly as written there: it must load and mean what it says.
ISSUE_EXAMPLE_FILE = Path(__file__).with_name("issue_example.yaml")
ISSUE_EXAMPLE = ISSUE_EXAMPLE_FILE.read_text()


def test_the_issue_example_loads_and_means_what_it_says() -> None:
    config = load_alerts_config(ISSUE_EXAMPLE_FILE)

    assert list(config.channels) == ["ops-hook", "pager", "finance-mail", "ops-slack"]
    assert [channel.type for channel in config.channels.values()] == [
        "webhook",
        "pagerduty",
        "email",
        "slack",
    ]
    assert [(rule.match.describe(), rule.owner) for rule in config.owners] == [
        ("process=invoice_posting system=erp", "finance"),
        ("kind=dead_letter", "oncall"),
    ]
    first = config.routes[0]
    assert first.match.event == ("exception.opened",)
    assert first.match.impact == ("critical", "high")
    assert first.to == ("pager", "ops-hook")
    assert first.group_by == ("fingerprint",)
    assert (first.group_wait, first.group_interval, first.repeat_interval) == (
        timedelta(seconds=30),
        timedelta(minutes=5),
        timedelta(hours=4),
    )
    assert first.continue_ is True
    assert config.routes[1].match.event == ("exception.overdue", "exception.assigned")
    assert config.escalations[0].unacknowledged_after == timedelta(minutes=30)
    assert [(d.name, d.content) for d in config.digests] == [
        ("finance-daily", "aging"),
        ("cio-weekly", "kpis"),
    ]
    assert config.maintenance[0].duration == timedelta(hours=4)


def test_the_shipped_example_is_the_issue_example_with_comments() -> None:
    assert yaml.safe_load(DEFAULT_CONFIG_FILE.read_text()) == yaml.safe_load(ISSUE_EXAMPLE)
    assert load_alerts_config() == parse_alerts_config(yaml.safe_load(ISSUE_EXAMPLE))


def test_schedules_mean_what_crontab_means_weekdays_included() -> None:
    config = load_alerts_config()
    monday = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday, midnight
    finance, cio = config.digests

    runs = []
    moment = monday
    for _ in range(6):
        moment = next_run(finance.schedule, config.zone, moment)
        runs.append(moment.strftime("%a %H:%M"))
        moment += timedelta(minutes=1)

    # APScheduler's own from_crontab would say Tue … Sat: its weekdays start at Monday = 0.
    assert runs == ["Mon 07:00", "Tue 07:00", "Wed 07:00", "Thu 07:00", "Fri 07:00", "Mon 07:00"]
    assert next_run(cio.schedule, config.zone, monday).strftime("%a %H:%M") == "Mon 08:00"
    upgrade = next_run(config.maintenance[0].schedule, config.zone, monday)
    assert upgrade.strftime("%a %H:%M") == "Sat 02:00"
    assert next_run("0 9 * * 7", config.zone, monday).strftime("%a") == "Sun"
    assert next_run("0 9 * * 5-7", config.zone, monday).strftime("%a") == "Fri"


def test_schedules_run_in_the_configured_time_zone() -> None:
    data = yaml.safe_load(ISSUE_EXAMPLE)
    data["timezone"] = "Europe/Paris"
    config = parse_alerts_config(data)

    run = next_run(config.digests[0].schedule, config.zone, datetime(2026, 12, 1, tzinfo=UTC))

    assert run.astimezone(UTC).strftime("%H:%M") == "06:00"  # 07:00 in Paris in winter


def _problems(change) -> list[str]:
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(ISSUE_EXAMPLE))
    change(data)
    with pytest.raises(InvalidAlertsConfig) as raised:
        parse_alerts_config(data)
    return raised.value.problems


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda d: d["routes"][0].update(group_wait="30x"),
            "routes[0].group_wait: invalid duration '30x' (use e.g. 90s, 15m, 4h, 3d)",
        ),
        (
            lambda d: d["routes"][1].update(to=["finance-mial"]),
            "routes[1].to[0]: unknown channel 'finance-mial' "
            "(channels: ops-hook, pager, finance-mail, ops-slack)",
        ),
        (
            lambda d: d["escalations"][0].update(to=["pagr"]),
            "escalations[0].to[0]: unknown channel 'pagr'",
        ),
        (
            lambda d: d["digests"][1].update(to=["cio-mail"]),
            "digests[1].to[0]: unknown channel 'cio-mail'",
        ),
        (
            lambda d: d["routes"][0].update(grop_by=["fingerprint"]),
            "routes[0].grop_by: unknown key",
        ),
        (lambda d: d.update(route=[]), "route: unknown key"),
        (
            lambda d: d["channels"]["pager"].update(routing_key="R0123"),
            "channels.pager.routing_key: unknown key",
        ),
        (
            lambda d: d["channels"]["pager"].pop("routing_key_env"),
            "channels.pager.routing_key_env: required key is missing",
        ),
        (
            lambda d: d["channels"]["pager"].update(type="sms"),
            "channels.pager.type: unknown channel type 'sms' (use webhook, pagerduty, email, "
            "slack)",
        ),
        (
            lambda d: d["channels"]["pager"].pop("type"),
            "channels.pager.type: required key is missing",
        ),
        (
            lambda d: d["routes"][0]["match"].update(impact=["critical", "hgh"]),
            "routes[0].match.impact[1]: 'hgh' is not one of 'critical', 'high', 'medium' or 'low'",
        ),
        (
            lambda d: d["routes"][2]["match"].update(event="slo.alerts"),
            "routes[2].match.event[0]: 'slo.alerts' is not one of 'exception.opened'",
        ),
        (
            lambda d: d["owners"][0]["match"].update(event="exception.opened"),
            "owners[0].match.event: unknown key",  # owners act on exceptions, not events
        ),
        (
            lambda d: d["routes"][0].update(group_by=["fingerprnt"]),
            "routes[0].group_by[0]: 'fingerprnt' is not one of 'fingerprint'",
        ),
        (
            lambda d: d["digests"][0].update(schedule="0 7 * *"),
            "digests[0].schedule: '0 7 * *' is not a cron schedule: has 4 fields",
        ),
        (
            lambda d: d["maintenance"][0].update(schedule="0 25 * * 6"),
            "maintenance[0].schedule: '0 25 * * 6' is not a cron schedule",
        ),
        (
            lambda d: d["digests"][0].update(schedule="0 7 * * 1-9"),
            "digests[0].schedule: '0 7 * * 1-9' is not a cron schedule: '9' is not a weekday",
        ),
        (
            lambda d: d["maintenance"][0].update(duration="4 hours"),
            "maintenance[0].duration: invalid duration '4 hours'",
        ),
        (
            lambda d: d["digests"][0].update(content="pie"),
            "digests[0].content: 'pie' is not one of 'aging' or 'kpis'",
        ),
        (
            lambda d: d["digests"].append(dict(d["digests"][0])),
            "digests[2].name: 'finance-daily' is used twice",
        ),
        (
            lambda d: d["channels"]["finance-mail"].update(smtp="mail.example.com"),
            "channels.finance-mail.smtp: 'mail.example.com' is not host:port",
        ),
        (
            lambda d: d["channels"]["finance-mail"].update(to=["finance"]),
            "channels.finance-mail.to[0]: 'finance' is not an email address",
        ),
        (
            lambda d: d["channels"]["finance-mail"].update(username_env="Q2C_SMTP_USER"),
            "channels.finance-mail: username_env and password_env go together",
        ),
        (
            lambda d: d["channels"]["finance-mail"].update(
                smtp="smtp.example.com:25",
                security="none",
                username_env="Q2C_SMTP_USER",
                password_env="Q2C_SMTP_PASSWORD",
            ),
            "channels.finance-mail: a login with security: none would send the password "
            "unencrypted",
        ),
        (
            lambda d: d["channels"]["ops-hook"].update(url="ftp://127.0.0.1/hook"),
            "channels.ops-hook.url: 'ftp://127.0.0.1/hook' is not an http:// or https:// URL",
        ),
        (
            lambda d: d["channels"]["ops-hook"].update(secret_env="Q2C-HOOK"),
            "channels.ops-hook.secret_env: 'Q2C-HOOK' is not an environment variable name",
        ),
        (
            lambda d: d["channels"].update({"ops slack": {"type": "slack", "url_env": "X"}}),
            "channels.ops slack: 'ops slack' may hold only letters, digits",
        ),
        (
            lambda d: d.update(timezone="Mars/Olympus"),
            "timezone: 'Mars/Olympus' is not a time zone",
        ),
    ],
)
def test_a_mistake_is_reported_by_its_key_path(change, problem: str) -> None:
    problems = _problems(change)

    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_every_mistake_is_reported_at_once() -> None:
    def two_mistakes(d: dict) -> None:
        d["routes"][0]["group_wait"] = "soon"
        d["routes"][2]["to"] = ["pagerduty"]

    # The unknown channel is found only once the file's shape is right: one round at a time.
    shape = _problems(two_mistakes)
    assert shape == ["routes[0].group_wait: invalid duration 'soon' (use e.g. 90s, 15m, 4h, 3d)"]

    def three_names(d: dict) -> None:
        d["routes"][0]["to"] = ["pagr", "ops-hok"]
        d["escalations"][0]["to"] = ["pagr"]

    assert [p.split(":")[0] for p in _problems(three_names)] == [
        "routes[0].to[0]",
        "routes[0].to[1]",
        "escalations[0].to[0]",
    ]


def test_an_unreadable_or_shapeless_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(Q2CError, match="cannot read alerts config"):
        load_alerts_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("routes: [\n")
    with pytest.raises(Q2CError, match="is not valid YAML"):
        load_alerts_config(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- channels\n")
    with pytest.raises(InvalidAlertsConfig, match=r"\(top level\): expected a mapping"):
        load_alerts_config(listed)


def test_an_empty_file_configures_nothing(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text("# no alerting yet\n")

    config = load_alerts_config(path)

    assert (config.channels, config.routes, config.owners) == ({}, (), ())


def test_email_security_defaults_to_tls_on_465_plain_on_loopback_else_starttls() -> None:
    def security(smtp: str, **extra: str) -> str:
        channel = {"type": "email", "smtp": smtp, "from": "q2c@example.com"}
        data = {"channels": {"mail": {**channel, "to": "ops@example.com", **extra}}}
        mail = parse_alerts_config(data).channels["mail"]
        assert isinstance(mail, EmailChannel)
        return mail.effective_security

    assert security("smtp.example.com:587") == "starttls"
    assert security("smtp.example.com:465") == "tls"
    assert security("127.0.0.1:2525") == "none"
    assert security("localhost:25") == "none"
    assert security("[::1]:25") == "none"
    assert security("127.0.0.1:2525", security="starttls") == "starttls"


def test_the_reference_names_every_key_and_every_event() -> None:
    reference = (Path(__file__).parents[2] / "docs" / "alerts.md").read_text()
    prose = re.sub(r"```.*?```", "", reference, flags=re.DOTALL)  # the examples aside
    quoted = " ".join(re.findall(r"`([^`]+)`", prose))
    models = (
        AlertsConfig,
        EventMatch,
        OwnerRule,
        Route,
        Escalation,
        Digest,
        Maintenance,
        WebhookChannel,
        PagerDutyChannel,
        EmailChannel,
        SlackChannel,
    )
    keys = {info.alias or name for model in models for name, info in model.model_fields.items()}

    missing = sorted(key for key in keys if not re.search(rf"\b{key}\b", quoted))
    unnamed = sorted(event for event in EVENT_TYPES if f"`{event}`" not in reference)

    assert (missing, unnamed) == ([], [])

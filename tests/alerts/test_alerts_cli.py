"""`q2c alerts check` and `q2c alerts test CHANNEL`, as an operator runs them."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from cli.main import main
from tests.support.peers import free_port

EXAMPLE = Path(__file__).with_name("issue_example.yaml")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# Every variable the example's channels name, unset unless a test sets it.
UNSET = {
    "Q2C_OPS_HOOK_SECRET": None,
    "Q2C_PD_ROUTING_KEY": None,
    "Q2C_SLACK_WEBHOOK_URL": None,
    "Q2C_ALERTS_CONFIG": None,
}


def q2c(*args: str, **env: str):
    return CliRunner().invoke(main, list(args), env={**UNSET, **env})


def pointed_at(tmp_path: Path, **urls: str) -> Path:
    """The issue's example with channels' URLs (and the SMTP address) moved to test ports."""
    data = yaml.safe_load(EXAMPLE.read_text())
    for name, url in urls.items():
        channel = data["channels"][name.replace("_", "-")]
        channel["smtp" if channel["type"] == "email" else "url"] = url
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_check_summarises_the_shipped_file_and_warns_of_each_unset_secret() -> None:
    result = q2c("alerts", "check", Q2C_OPS_HOOK_SECRET=SECRET)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "ok: 4 channels, 2 ownership rules, 3 routes, 1 escalation, 2 digests, 1 maintenance window"
    )
    assert (
        "  pager         pagerduty  http://127.0.0.1:9001/v2/enqueue, routing key "
        "$Q2C_PD_ROUTING_KEY"
    ) in lines
    assert "  1. process=invoice_posting system=erp → finance" in lines
    assert (
        "  1. event=exception.opened impact=critical|high → pager, ops-hook (grouped by "
        "fingerprint; wait 30s, interval 5m, repeat 4h)"
    ) in lines
    assert "  1. impact=critical unacknowledged after 30m → pager" in lines
    assert any(line.startswith("  finance-daily: aging at '0 7 * * 1-5'") for line in lines)
    assert result.stderr.splitlines() == [
        "warning: channels.pager: $Q2C_PD_ROUTING_KEY (routing key) is not set: the channel "
        "cannot deliver",
        "warning: channels.ops-slack: $Q2C_SLACK_WEBHOOK_URL (webhook URL) is not set: the "
        "channel cannot deliver",
    ]


def test_check_reads_q2c_alerts_config_and_names_the_key_at_fault(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["routes"][0]["group_wait"] = "30x"
    data["routes"][1]["to"] = ["finance-mial"]
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(data))

    result = q2c("alerts", "check", Q2C_ALERTS_CONFIG=str(path))

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"q2c: error: invalid alerts config {path}:\n"
        "  routes[0].group_wait: invalid duration '30x' (use e.g. 90s, 15m, 4h, 3d)\n"
    )


def test_check_fails_on_a_malformed_secret_without_showing_it(tmp_path: Path) -> None:
    result = q2c(
        "alerts",
        "check",
        str(EXAMPLE),
        Q2C_OPS_HOOK_SECRET="hunter2",
        Q2C_PD_ROUTING_KEY="R0123",
        Q2C_SLACK_WEBHOOK_URL="hooks.slack.com/services/T0/B0/hunter3",
    )

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: channels.ops-hook: $Q2C_OPS_HOOK_SECRET (signing secret) does not start with "
        "whsec_ (expected whsec_<base64>)",
        "error: channels.ops-slack: $Q2C_SLACK_WEBHOOK_URL (webhook URL) is not an http:// or "
        "https:// URL",
    ]
    assert "hunter" not in result.output


def test_test_sends_a_signed_test_webhook(tmp_path: Path, consumer) -> None:
    path = pointed_at(tmp_path, ops_hook=consumer.url)

    result = q2c("alerts", "test", "ops-hook", "--config", str(path), Q2C_OPS_HOOK_SECRET=SECRET)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"ops-hook: delivered: {consumer.url} answered 204\n"
    [event] = consumer.events
    assert event.get_type() == "q2c.test"
    assert event.get_data()["link"] == "http://127.0.0.1:8501/"  # the console's default address
    assert "ops-hook" in event.get_data()["title"]


def test_test_of_pagerduty_triggers_then_resolves_so_no_incident_stays_open(
    tmp_path: Path, pagerduty
) -> None:
    path = pointed_at(tmp_path, pager=pagerduty.url)

    result = q2c(
        "alerts",
        "test",
        "pager",
        Q2C_ALERTS_CONFIG=str(path),
        Q2C_PD_ROUTING_KEY="R0123456789abcdef0123456789abcd",
    )

    assert result.exit_code == 0, result.output
    [trigger, resolve] = result.stdout.splitlines()
    assert trigger.startswith("pager: delivered: PagerDuty accepted the trigger (dedup_key msg_")
    assert resolve.startswith("pager: delivered: PagerDuty accepted the resolve (dedup_key msg_")
    assert list(pagerduty.alerts.values()) == ["resolved"]


def test_test_of_email_through_a_local_relay(tmp_path: Path, smtp_server) -> None:
    mailbox = smtp_server("plain")
    path = pointed_at(tmp_path, finance_mail=f"127.0.0.1:{mailbox.port}")

    result = q2c("alerts", "test", "finance-mail", "--config", str(path))

    assert result.exit_code == 0, result.output
    [(_, recipients, message)] = mailbox.messages
    assert recipients == ["finance@example.com"]
    assert message["Subject"] == "[low] Test notification from Q2C Console to finance-mail"


def test_test_says_why_a_delivery_failed_and_exits_1(tmp_path: Path) -> None:
    port = free_port()
    path = pointed_at(tmp_path, ops_hook=f"http://127.0.0.1:{port}/hook")

    unreachable = q2c(
        "alerts", "test", "ops-hook", "--config", str(path), Q2C_OPS_HOOK_SECRET=SECRET
    )
    unset = q2c("alerts", "test", "ops-slack", "--config", str(path))
    unknown = q2c("alerts", "test", "ops-sms", "--config", str(path))

    assert unreachable.exit_code == 1
    assert unreachable.stdout == (
        "ops-hook: failed: connection refused (sending again later may succeed)\n"
    )
    assert (unset.exit_code, unset.stdout) == (
        1,
        "ops-slack: failed: $Q2C_SLACK_WEBHOOK_URL is not set\n",
    )
    assert unknown.exit_code == 1
    assert unknown.stderr == (
        "q2c: error: no channel named 'ops-sms' (channels: ops-hook, pager, finance-mail, "
        "ops-slack)\n"
    )

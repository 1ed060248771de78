"""`q2c alerts run-once` records, routes and delivers what is due and says so;
`q2c silences` adds, lists and expires silences as the person whose token is given, refused
by role; the scheduler runs alerting only once an alerts.yaml is configured."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import Engine

from cli.main import main
from cli.scheduler import build_scheduler
from q2c.settings import Settings
from queries.tokens import create_token
from sla.policy import load_policy
from tests.support.alerting import SECRET, receiver
from tests.support.otlp import stage_span, traces_request


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    for name in ("Q2C_USER", "Q2C_TOKEN", "Q2C_MIGRATION_DATABASE_URL", "Q2C_ALERTS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return lambda *args: CliRunner().invoke(main, list(args))


def _config(tmp_path: Path, hook: str) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "console_url": "http://console.test:8501",
                "channels": {
                    "ops-hook": {"type": "webhook", "url": hook, "secret_env": "HOOK_SECRET"}
                },
                "routes": [{"match": {"event": "exception.opened"}, "to": ["ops-hook"]}],
            }
        )
    )
    return path


def test_run_once_routes_then_delivers_when_the_group_is_due_and_the_log_says_so(
    cli, send, run_evaluation, engine: Engine, users, db: psycopg.Connection, tmp_path: Path
) -> None:
    send(
        traces_request(
            stage_span(
                "INV-C1", "invoice_posting", "invoice_recorded", "erp", at_s=1, seq=10, error="down"
            )
        )
    )
    run_evaluation()  # classified: announced as exception.opened
    with receiver() as hook:
        path = _config(tmp_path, hook.url)
        first = cli("alerts", "run-once", "--config", str(path), "--json")
        # Its group waits group_wait (30 s) before telling: as if that much time had passed.
        db.execute("UPDATE alert_groups SET next_flush_at = now() - interval '1 second'")
        second = cli("alerts", "run-once", "--config", str(path))
    fin, cio = create_token(engine, "fin", "fin")[0], create_token(engine, "cio", "cio")[0]
    log = cli("alerts", "log", "--token", fin, "--json")
    refused = cli("alerts", "log", "--token", cio)

    assert first.exit_code == 0, first.output
    done = json.loads(first.stdout)
    assert (done["events_unpacked"], done["events_routed"]) == (1, 1)
    assert (len(done["groups"]), done["notifications"]) == (1, 0)
    assert second.exit_code == 0, second.output
    assert "1 new; 1 delivered, 0 will retry, 0 failed, 0 suppressed" in second.stdout
    [request] = hook.received
    assert request.body["type"] == "q2c.exception.opened"
    assert request.body["subject"] == "INV-C1"
    [logged] = json.loads(log.stdout)
    assert (logged["channel"], logged["status"], logged["state"]) == (
        "ops-hook",
        "delivered",
        "firing",
    )
    assert refused.exit_code != 0 and "finance_ops role" in refused.output


def test_silences_are_added_listed_and_expired_by_on_call_and_refused_to_finance(
    cli, engine: Engine, users, db: psycopg.Connection
) -> None:
    ops, fin = create_token(engine, "ops", "ops")[0], create_token(engine, "fin", "fin")[0]
    refused = cli(
        "silences",
        "add",
        "--match",
        "system=erp",
        "--for",
        "2h",
        "--reason",
        "upgrade",
        "--token",
        fin,
    )
    added = cli(
        "silences",
        "add",
        "--match",
        "system=erp",
        "--match",
        "system=billing",
        "--for",
        "2h",
        "--reason",
        "ERP upgrade",
        "--token",
        ops,
        "--json",
    )
    [silence] = json.loads(added.stdout)
    listed = cli("silences", "list", "--token", fin, "--json")
    expired = cli("silences", "expire", str(silence["id"]), "--token", ops)
    again = cli("silences", "expire", str(silence["id"]), "--token", ops)
    after = cli("silences", "list", "--token", ops, "--json")

    assert refused.exit_code != 0 and "oncall role" in refused.output
    assert added.exit_code == 0, added.output
    assert silence["matchers"] == {"system": ["erp", "billing"]} and silence["author"] == "ops"
    assert [s["id"] for s in json.loads(listed.stdout)] == [silence["id"]]
    assert expired.exit_code == 0, expired.output
    assert again.exit_code != 0 and "no silence" in again.output
    assert json.loads(after.stdout) == []
    actions = db.execute(
        "SELECT actor, action FROM audit_log WHERE action LIKE 'silence.%' ORDER BY id"
    ).fetchall()
    assert actions == [("ops", "silence.create"), ("ops", "silence.expire")]


def test_a_malformed_match_is_refused_with_its_form(cli, engine: Engine, users) -> None:
    ops = create_token(engine, "ops", "ops")[0]
    result = cli(
        "silences", "add", "--match", "erp", "--for", "2h", "--reason", "x", "--token", ops
    )

    assert result.exit_code != 0
    assert "give KEY=VALUE" in result.output


def test_the_scheduler_runs_alerting_once_an_alerts_yaml_is_configured(tmp_path: Path) -> None:
    policy = load_policy()
    unconfigured = build_scheduler(Settings(database_url=None), "postgresql://unused", policy)
    configured = build_scheduler(
        Settings(database_url=None, alerts_config=_config(tmp_path, "http://127.0.0.1:9/hook")),
        "postgresql://unused",
        policy,
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("routes: [{to: [nowhere]}]\n")
    refused = build_scheduler(
        Settings(database_url=None, alerts_config=broken), "postgresql://unused", policy
    )

    assert "alerts" not in {job.id for job in unconfigured.get_jobs()}
    assert "alerts" in {job.id for job in configured.get_jobs()}
    # A file that does not load leaves alerting off and every other job running.
    assert {job.id for job in refused.get_jobs()} == {job.id for job in unconfigured.get_jobs()}


def test_the_log_in_text_says_why_a_notification_was_suppressed(
    cli, send, run_evaluation, engine: Engine, users, db: psycopg.Connection, tmp_path: Path
) -> None:
    fin = create_token(engine, "fin", "fin")[0]
    send(
        traces_request(
            stage_span(
                "INV-C9", "invoice_posting", "invoice_recorded", "erp", at_s=1, seq=90, error="down"
            )
        )
    )
    run_evaluation()
    ops = create_token(engine, "ops", "ops")[0]
    silenced = cli(
        "silences", "add", "--token", ops, "--match", "system=erp", "--for", "2h", "--reason", "ERP"
    )
    with receiver() as hook:
        path = _config(tmp_path, hook.url)
        cli("alerts", "run-once", "--config", str(path))
        db.execute("UPDATE alert_groups SET next_flush_at = now() - interval '1 second'")
        cli("alerts", "run-once", "--config", str(path))
    log = cli("alerts", "log", "--token", fin, "--status", "suppressed")

    assert silenced.exit_code == 0, silenced.output
    assert log.exit_code == 0, log.output
    assert "silence" in log.stdout and ": ERP" in log.stdout
    assert hook.received == []

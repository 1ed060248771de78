"""`q2c reconcile check` validates and probes, `run` prints the documented object, `runs`
and `breaks` list what was recorded for a finance_ops token; the scheduler runs each
reconciliation on its schedule once Q2C_RECONCILE_CONFIG is set, and a bad file leaves
the other jobs running."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import psycopg
import pytest
import yaml
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from click.testing import CliRunner

from cli.main import main
from cli.scheduler import build_scheduler
from q2c.settings import Settings
from sla.policy import load_policy
from tests.support.reconciling import billing, config_data, erp


@pytest.fixture
def config_file(tmp_path: Path, exports) -> Path:
    exports([billing("INV-1"), billing("INV-2", total="1.00")], [erp("INV-1")])
    path = tmp_path / "reconcile.yaml"
    path.write_text(yaml.safe_dump(config_data(), sort_keys=False))
    return path


@pytest.fixture
def cli(db_url: str, config_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("Q2C_RECONCILE_CONFIG", str(config_file))
    for name in ("Q2C_USER", "Q2C_TOKEN", "Q2C_MIGRATION_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return lambda *args: CliRunner().invoke(main, list(args))


def test_check_validates_then_probes_each_source(cli, config_file: Path) -> None:
    result = cli("reconcile", "check")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "ok: 1 reconciliation",
        "invoices: invoice by invoice_id, every 15m; compares amount, tax_amount, currency, "
        "customer_id, status",
        "  billing (file): 1 file match billing*.csv",
        "  erp (file): 1 file match erp.jsonl",
    ]


def test_check_says_which_source_cannot_be_read_and_exits_2(cli, config_file: Path) -> None:
    (config_file.parent / "erp.jsonl").unlink()

    result = cli("reconcile", "check", str(config_file))

    assert result.exit_code == 2
    assert f"  erp (file): FAILED: no file matches {config_file.parent / 'erp.jsonl'}" in (
        result.output
    )


def test_check_names_the_key_of_a_mistake_without_a_traceback(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    data = config_data(schedule="soon")
    bad.write_text(yaml.safe_dump(data))

    result = cli("reconcile", "check", str(bad))

    assert result.exit_code != 0
    assert "reconciliations.invoices.schedule: invalid schedule 'soon'" in result.output
    assert "Traceback" not in result.output


def test_run_prints_the_documented_object(cli) -> None:
    result = cli("reconcile", "run", "invoices", "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document == {
        "run_id": 1,
        "reconciliation": "invoices",
        "status": "succeeded",
        "checked": 2,
        "matched": 1,
        "pending": 0,
        "accuracy": 0.5,
        "breaks": {"missing_in:erp": 1},
    }


def test_run_without_a_name_runs_all_and_says_what_each_found(cli) -> None:
    result = cli("reconcile", "run")

    assert result.exit_code == 0, result.output
    assert result.output == (
        "invoices: run 1: 2 checked, 1 matched, 0 pending, accuracy 50.00%; "
        "breaks: missing_in:erp 1\n"
    )


def test_a_failed_run_exits_2_with_the_reason(cli, config_file: Path) -> None:
    (config_file.parent / "erp.jsonl").write_text("{not json\n")

    result = cli("reconcile", "run", "--json")

    assert result.exit_code == 2
    (document,) = json.loads(result.output)
    assert (document["status"], document["error_at"]) == ("failed", "erp.jsonl line 1")


def test_runs_and_breaks_list_what_was_recorded(cli, tokens) -> None:
    cli("reconcile", "run")

    runs = cli("reconcile", "runs", "--json", "--token", tokens["fin"])
    breaks = cli("reconcile", "breaks", "--json", "--token", tokens["fin"])
    table = cli("reconcile", "breaks", "--run", "1", "--token", tokens["fin"])
    refused = cli("reconcile", "runs", "--token", tokens["cio"])

    assert runs.exit_code == 0, runs.output + repr(runs.exception)
    (run,) = json.loads(runs.output)
    assert (run["run_id"], run["status"], run["checked"], run["source_rows"]) == (
        1,
        "succeeded",
        2,
        {"billing": 2, "erp": 1},
    )
    assert breaks.exit_code == 0, breaks.output + repr(breaks.exception)
    rows = json.loads(breaks.output)
    assert [(row["key"], row["break_type"], row["exception_status"]) for row in rows] == [
        ("INV-2", "missing_in:erp", "open")
    ]
    assert rows[0]["records"]["billing"][0]["_at"] == "billing.csv line 3"
    assert table.output.splitlines()[0].split() == [
        "run_id",
        "reconciliation",
        "key",
        "break_type",
        "exception_id",
        "exception_status",
        "accepted",
        "correlation_id",
    ]
    assert refused.exit_code != 0 and "needs the finance_ops role" in refused.output


def test_breaks_are_listed_by_reconciliation_kind_field_and_key(cli, tokens, exports) -> None:
    exports(
        [billing("INV-1"), billing("INV-2"), billing("INV-3", total="99.00")],
        [erp("INV-1"), erp("INV-3")],
    )
    cli("reconcile", "run")

    def listed(*options: str) -> list[tuple[str, str]]:
        result = cli("reconcile", "breaks", "--json", "--token", tokens["fin"], *options)
        assert result.exit_code == 0, result.output + repr(result.exception)
        return [(row["key"], row["break_type"]) for row in json.loads(result.output)]

    assert listed("--kind", "mismatch") == [("INV-3", "mismatch:amount")]
    assert listed("--field", "amount", "--key", "INV-3") == [("INV-3", "mismatch:amount")]
    assert listed("--kind", "missing_in", "--key", "INV-3") == []
    assert listed("--reconciliation", "invoices", "--kind", "missing_in") == [
        ("INV-2", "missing_in:erp")
    ]
    assert listed("--reconciliation", "payments") == []


def test_the_scheduler_runs_each_reconciliation_on_its_schedule(
    config_file: Path, tmp_path: Path
) -> None:
    data = config_data()
    data["reconciliations"]["nightly"] = {
        **data["reconciliations"]["invoices"],
        "schedule": "0 2 * * *",
    }
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(data))

    scheduler = build_scheduler(
        Settings(database_url=None, reconcile_config=path), "postgresql://unused", load_policy()
    )

    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert isinstance(jobs["reconcile-invoices"].trigger, IntervalTrigger)
    assert jobs["reconcile-invoices"].trigger.interval.total_seconds() == 900
    assert isinstance(jobs["reconcile-nightly"].trigger, CronTrigger)
    assert (jobs["reconcile-nightly"].coalesce, jobs["reconcile-nightly"].max_instances) == (
        True,
        1,
    )


def test_a_bad_reconcile_yaml_is_logged_and_the_other_jobs_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config_data(key=None)))

    with caplog.at_level(logging.ERROR, logger="cli.scheduler"):
        scheduler = build_scheduler(
            Settings(database_url=None, reconcile_config=bad), "postgresql://unused", load_policy()
        )

    assert {job.id for job in scheduler.get_jobs()} == {
        "evaluate",
        "alerts-watch",
        "alerts-prune",
        "reconcile-prune",
        "replays",
        "partitions",
    }
    assert "reconciliation off: invalid reconcile config" in caplog.text
    assert "reconciliations.invoices.key" in caplog.text


def test_the_scheduled_job_runs_the_reconciliation(db, db_url: str, config_file: Path) -> None:
    scheduler = build_scheduler(
        Settings(database_url=None, reconcile_config=config_file), db_url, load_policy()
    )

    scheduler.get_job("reconcile-invoices").func()

    assert db.execute(
        "SELECT reconciliation, status, checked FROM reconciliation_runs"
    ).fetchall() == [("invoices", "succeeded", 2)]


def test_accept_resolves_the_break_with_a_reason_for_finance_only(cli, tokens) -> None:
    cli("reconcile", "run")
    args = ("reconcile", "accept", "1", "INV-2", "missing_in:erp", "--reason")

    refused = cli(*args, "posted by hand", "--token", tokens["cio"])
    accepted = cli(*args, "posted by hand", "--token", tokens["fin"])
    again = cli(*args, "twice", "--token", tokens["fin"])
    breaks = cli("reconcile", "breaks", "--json", "--token", tokens["fin"])

    assert refused.exit_code != 0 and "needs the finance_ops role" in refused.output
    assert accepted.exit_code == 0, accepted.output + repr(accepted.exception)
    assert re.fullmatch(
        r"accepted missing_in:erp of INV-2 \(acceptance \d+\); exception \d+ resolved\n",
        accepted.output,
    )
    assert again.exit_code != 0 and "already accepted" in again.output
    (row,) = json.loads(breaks.output)
    assert (row["accepted"], row["exception_status"]) == (True, "resolved")


def test_resolving_a_break_by_hand_says_the_next_run_opens_it_again(
    cli, tokens, db: psycopg.Connection
) -> None:
    cli("reconcile", "run")
    (exception_id,) = db.execute(
        "SELECT id FROM exceptions WHERE error_type = 'missing_in:erp'"
    ).fetchone()

    resolved = cli(
        "exceptions", "resolve", str(exception_id), "--reason", "fixed", "--token", tokens["fin"]
    )

    assert resolved.exit_code == 0, resolved.output
    assert "1 of them is a break between the systems of record" in resolved.output
    assert "q2c reconcile accept" in resolved.output

"""sla.yaml is validated on load, and every error names the key at fault."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli.main import main
from q2c.errors import Q2CError
from sla.policy import DEFAULT_POLICY_FILE, load_policy


def test_the_shipped_policy_holds_the_seed_catalog_and_due_times() -> None:
    policy = load_policy()

    assert [p.name for p in policy.catalog()] == [
        "order_to_activation",
        "invoice_posting",
        "payment_application",
        "subscription_amendment",
        "customer_merge",
    ]
    assert policy.impact_due["critical"] == timedelta(hours=4)
    assert policy.impact_due["low"] == timedelta(days=7)
    assert policy.processes["order_to_activation"].objective.latency == timedelta(minutes=15)
    assert policy.stalled_after("invoice_posting", "invoice_recorded") == timedelta(minutes=30)
    assert policy.impact_of("invoice_posting", "invoice_recorded", "error", 10_000) == "high"
    assert policy.impact_of("invoice_posting", "invoice_recorded", "error", 9_999) == "medium"


def _mutated(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    change(data)
    path = tmp_path / "sla.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["processes"]["invoice_posting"].update(objectiv={}),
            "processes.invoice_posting.objectiv: Extra inputs are not permitted",
        ),
        (
            lambda d: d["impact_due"].update(high="a day"),
            "impact_due.high: invalid duration 'a day'",
        ),
        (
            lambda d: d["processes"]["invoice_posting"]["objective"].update(to="invoice_paid"),
            "processes.invoice_posting: objective.to: 'invoice_paid' is not one of the stages",
        ),
        (lambda d: d["impact_due"].pop("low"), "impact_due: missing low"),
        (
            lambda d: d["headlines"][1].update(to="invoice_paid"),
            "headlines.1.to: 'invoice_paid' is not a stage of invoice_posting",
        ),
        (
            lambda d: d["headlines"][0].update(percentiles=[75]),
            "headlines.0.percentiles: choose among [50, 90, 95, 99]",
        ),
        (
            lambda d: d["impact_rules"][0]["when"].update(process="billing"),
            "impact_rules.0.when.process: unknown process 'billing'",
        ),
        (
            lambda d: d["processes"]["customer_merge"]["objective"].update(target="101%"),
            "processes.customer_merge.objective.target: must be between 0% and 100%",
        ),
        (
            lambda d: d["processes"]["customer_merge"]["stages"][1].update(stalled_after="-5m"),
            "processes.customer_merge.stages.1.stalled_after: invalid duration '-5m'",
        ),
    ],
)
def test_a_bad_policy_names_the_key(tmp_path: Path, change, message: str) -> None:
    path = _mutated(tmp_path, change)

    with pytest.raises(Q2CError, match=re.escape(message)):
        load_policy(path)


def test_sla_check_command_reports_problems_without_a_traceback(tmp_path: Path) -> None:
    bad = _mutated(tmp_path, lambda d: d["impact_due"].update(high="soon"))

    good = CliRunner().invoke(main, ["sla", "check", str(DEFAULT_POLICY_FILE)])
    refused = CliRunner().invoke(main, ["sla", "check", str(bad)])

    assert good.exit_code == 0 and "ok: 5 processes, 16 stages" in good.output
    assert refused.exit_code == 1
    assert "impact_due.high: invalid duration 'soon'" in refused.output
    assert "Traceback" not in refused.output


def test_unreadable_or_malformed_files_are_explained(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("processes: [unclosed")

    with pytest.raises(Q2CError, match="not valid YAML"):
        load_policy(broken)
    with pytest.raises(Q2CError, match="cannot read SLA policy"):
        load_policy(tmp_path / "missing.yaml")

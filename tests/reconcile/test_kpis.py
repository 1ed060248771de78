"""Reconciliation accuracy of the records among the KPIs: per reconciliation and source
pair, its latest run and the window's runs, in `q2c kpis --json` and its text, apart from
the telemetry's reconciliation — checked against figures worked out here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from cli.main import main
from queries.kpis import collect_kpis
from sla.policy import load_policy
from tests.support.reconciling import NOW, billing, erp

HOUR = timedelta(hours=1)


@pytest.fixture
def three_runs(exports, reconcile) -> None:
    """Run 1: 4 invoices, 1 matched; run 2: the same 4, 3 matched; run 3 fails."""
    exports(
        [billing("INV-1"), billing("INV-2"), billing("INV-3"), billing("INV-4"), billing("INV-4")],
        [erp("INV-1"), erp("INV-3", taxTotal=20.5), erp("INV-4")],
    )
    assert reconcile().status == "succeeded"
    exports(
        [billing("INV-1"), billing("INV-2"), billing("INV-3"), billing("INV-4")],
        [erp("INV-1"), erp("INV-2"), erp("INV-3"), erp("INV-4", currencyCode="USD")],
    )
    assert reconcile(now=NOW + timedelta(minutes=15)).status == "succeeded"
    exports([billing("INV-1", total="lots")], [erp("INV-1")])
    assert reconcile(now=NOW + timedelta(minutes=30)).status == "failed"


def test_the_latest_run_and_the_window_per_reconciliation_and_pair(
    engine: Engine, three_runs: None
) -> None:
    kpis = collect_kpis(engine, load_policy(), HOUR)

    invoices = kpis["records_reconciliation"]["invoices"]
    assert invoices["latest"] is not None
    assert (invoices["latest"]["run_id"], invoices["latest"]["checked"]) == (2, 4)
    assert invoices["latest"]["accuracy"] == 0.75
    assert invoices["window"] == {
        "runs": 2,
        "failed": 1,
        "checked": 8,
        "matched": 4,
        "accuracy": 0.5,
    }
    assert invoices["pairs"] == [
        {
            "sources": ["billing", "erp"],
            "latest": {"checked": 4, "matched": 3, "accuracy": 0.75},
            "window": {"checked": 8, "matched": 4, "accuracy": 0.5},
        }
    ]
    # Telemetry knows none of these invoices: its own reconciliation is untouched.
    assert all(p["reconciliation"]["checked"] == 0 for p in kpis["processes"].values())


def test_a_window_before_any_run_has_none(engine: Engine, three_runs: None) -> None:
    before = collect_kpis(engine, load_policy(), HOUR, datetime.now(UTC) - timedelta(days=1))
    assert before["records_reconciliation"] == {}


def test_a_reconciliation_that_only_failed_shows_its_failures(
    engine: Engine, exports, reconcile
) -> None:
    exports([billing("INV-1", total="lots")], [erp("INV-1")])
    reconcile()

    kpis = collect_kpis(engine, load_policy(), HOUR)

    assert kpis["records_reconciliation"] == {
        "invoices": {
            "latest": None,
            "window": {"runs": 0, "failed": 1, "checked": 0, "matched": 0, "accuracy": None},
            "pairs": [],
        }
    }


def test_kpis_command_prints_them_as_json_and_text(
    db_url: str, three_runs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)

    as_json = CliRunner().invoke(main, ["kpis", "--json", "--window", "1h"])
    as_text = CliRunner().invoke(main, ["kpis", "--window", "1h"])

    assert as_json.exit_code == 0, as_json.output
    shown = json.loads(as_json.output)["records_reconciliation"]["invoices"]
    assert shown["latest"]["accuracy"] == 0.75 and shown["window"]["accuracy"] == 0.5
    assert as_text.exit_code == 0, as_text.output
    lines = as_text.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("records reconciled"))
    assert lines[header + 1].split() == [
        "invoices",
        "all",
        "sources",
        "75.00%",
        "4",
        "50.00%",
        "2",
        "1",
    ]
    assert lines[header + 2].split() == ["billing", "/", "erp", "75.00%", "4", "50.00%"]

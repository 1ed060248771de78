"""reconcile.yaml: the issue's example loads as written; every mistake is named by its key
path, all at once; schedules are durations or cron lines; fields are checked against what
the sources give."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconcile.load import (
    DEFAULT_CONFIG_FILE,
    InvalidReconcileConfig,
    load_reconcile_config,
    parse_reconcile_config,
)
from tests.support.reconciling import config_data


def _problems(change) -> list[str]:
    data = config_data()
    change(data["reconciliations"]["invoices"])
    with pytest.raises(InvalidReconcileConfig) as raised:
        parse_reconcile_config(data)
    return raised.value.problems


def test_the_shipped_example_is_the_issues_and_loads() -> None:

    config = load_reconcile_config(DEFAULT_CONFIG_FILE)

    invoices = config.reconciliations["invoices"]
    assert list(invoices.sources) == ["billing", "erp", "warehouse"]
    assert [s.type for s in invoices.sources.values()] == ["file", "http", "sql"]
    assert (invoices.schedule, invoices.grace) == (timedelta(minutes=15), timedelta(minutes=30))
    assert invoices.compare["status"].mapped("erp") == {"closed": "settled", "open": "open"}


def test_the_shipped_example_keeps_the_issues_keys() -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_FILE.read_text())

    invoices = data["reconciliations"]["invoices"]
    assert set(invoices) == {"object", "key", "schedule", "grace", "scope", "sources", "compare"}
    assert invoices["sources"]["erp"]["next"] == "links.next"
    assert invoices["compare"]["amount"] == {"tolerance": 0.005}


def test_a_schedule_is_a_duration_or_a_cron_line() -> None:
    data = config_data(schedule="*/10 6-18 * * 1-5")
    assert parse_reconcile_config(data).reconciliations["invoices"].schedule == "*/10 6-18 * * 1-5"
    assert _problems(lambda r: r.update(schedule="15x")) == [
        "reconciliations.invoices.schedule: invalid schedule '15x' (a duration such as 15m, "
        "or a cron line)"
    ]
    assert _problems(lambda r: r.update(schedule="61 * * * *"))[0].startswith(
        "reconciliations.invoices.schedule: '61 * * * *' is not a cron schedule"
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda r: r["sources"]["erp"].update(next="links.next"),
            "reconciliations.invoices.sources.erp.next: unknown key",
        ),
        (
            lambda r: r["sources"]["erp"].update(type="ftp"),
            "reconciliations.invoices.sources.erp.type: unknown source type 'ftp' "
            "(use file, http, sql)",
        ),
        (lambda r: r.pop("key"), "reconciliations.invoices.key: required key is missing"),
        (
            lambda r: r.update(grace="soon"),
            "reconciliations.invoices.grace: invalid duration 'soon' (use e.g. 90s, 15m, 4h, 3d)",
        ),
        (
            lambda r: r["compare"].update(amount={"tolerance": -1}),
            "reconciliations.invoices.compare.amount.tolerance: Input should be greater than or "
            "equal to 0",
        ),
        (
            lambda r: r["compare"]["status"]["map"].update(crm={"won": "open"}),
            "reconciliations.invoices.compare.status.map.crm: unknown source "
            "(sources: billing, erp)",
        ),
        (
            lambda r: r["compare"].update(contract_version="exact"),
            "reconciliations.invoices.compare.contract_version: no source gives this field",
        ),
        (
            lambda r: r["sources"]["erp"]["fields"].pop("invoice_id"),
            "reconciliations.invoices.sources.erp.fields: does not give the key 'invoice_id'",
        ),
        (
            lambda r: r["sources"]["erp"]["fields"].update(colour="hue"),
            "reconciliations.invoices.sources.erp.fields.colour: not the key, a compared "
            "field, customer_id, amount, currency, legal_entity or updated_at",
        ),
        (
            lambda r: r["compare"].update(currency="exakt"),
            "reconciliations.invoices.compare.currency: use exact, {tolerance: N} or {map: …}, "
            "not 'exakt'",
        ),
        (
            lambda r: r["sources"].pop("erp"),
            "reconciliations.invoices.sources: Dictionary should have at least 2 items after "
            "validation, not 1",
        ),
    ],
)
def test_a_mistake_is_reported_by_its_key_path(change, problem: str) -> None:
    assert _problems(change) == [problem]


def test_every_mistake_is_reported_at_once() -> None:
    def two_mistakes(r: dict[str, Any]) -> None:
        r["sources"]["erp"]["url"] = "http://x"
        r["scope"] = {"updated_within": "forever"}

    assert [p.split(":")[0] for p in _problems(two_mistakes)] == [
        "reconciliations.invoices.scope.updated_within",
        "reconciliations.invoices.sources.erp.url",
    ]


def test_a_reconciliations_mistakes_are_reported_beside_anothers_that_does_not_parse() -> None:
    data = config_data()
    data["reconciliations"]["payments"] = copy.deepcopy(data["reconciliations"]["invoices"])
    data["reconciliations"]["invoices"]["schedule"] = "whenever"  # does not parse
    data["reconciliations"]["payments"]["key"] = "payment_id"  # parses; no source gives it

    with pytest.raises(InvalidReconcileConfig) as raised:
        parse_reconcile_config(data)

    assert [p.split(":")[0] for p in raised.value.problems] == [
        "reconciliations.invoices.schedule",
        "reconciliations.payments.sources.billing.fields",
        "reconciliations.payments.sources.billing.fields.invoice_id",
        "reconciliations.payments.sources.erp.fields",
        "reconciliations.payments.sources.erp.fields.invoice_id",
    ]


def test_a_bad_file_names_its_key(tmp_path: Path) -> None:
    data = copy.deepcopy(config_data())
    data["reconciliations"]["invoices"]["sources"]["billing"]["pth"] = "x.csv"
    path = tmp_path / "reconcile.yaml"
    path.write_text(yaml.safe_dump(data))

    with pytest.raises(InvalidReconcileConfig) as raised:
        load_reconcile_config(path)

    assert f"invalid reconcile config {path}:" in str(raised.value)
    assert "reconciliations.invoices.sources.billing.pth: unknown key" in raised.value.problems


def test_relative_paths_are_read_from_the_files_directory(tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "billing-1.csv").write_text("id\nA\n")
    data = config_data()
    data["reconciliations"]["invoices"]["sources"]["billing"]["path"] = "exports/billing-*.csv"
    path = tmp_path / "reconcile.yaml"
    path.write_text(yaml.safe_dump(data))

    source = load_reconcile_config(path).reconciliations["invoices"].sources["billing"]

    assert source.files() == [tmp_path / "exports" / "billing-1.csv"]

"""Reconciliations of two file sources written into tmp_path (the fixtures `exports` and
`reconcile`): a billing CSV export and an ERP JSON-lines export, each record given as a
dict of the source's own field names."""

from __future__ import annotations

import copy
import csv
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from reconcile.config import ReconcileConfig
from reconcile.engine import RunReport, run_reconciliation
from reconcile.load import parse_reconcile_config

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD = (NOW - timedelta(days=1)).isoformat()  # settled, and within the scope
BILLING_FIELDS = {
    "invoice_id": "id",
    "customer_id": "account",
    "amount": "total",
    "tax_amount": "tax",
    "currency": "currency",
    "status": "state",
    "updated_at": "updated",
}
ERP_FIELDS = {
    "invoice_id": "externalId",
    "customer_id": "customerRef",
    "amount": "amount",
    "tax_amount": "taxTotal",
    "currency": "currencyCode",
    "status": "status",
    "updated_at": "lastModified",
}
COMPARE = {
    "amount": {"tolerance": 0.005},
    "tax_amount": {"tolerance": 0.005},
    "currency": "exact",
    "customer_id": "exact",
    "status": {"map": {"billing": {"paid": "settled"}, "erp": {"closed": "settled"}}},
}


def billing(key: str, **changes: Any) -> dict[str, Any]:
    """A billing export row of invoice `key`, as billing names its columns."""
    row = {
        "id": key,
        "account": "C-1",
        "total": "120.00",
        "tax": "20.00",
        "currency": "EUR",
        "state": "paid",
        "updated": OLD,
    }
    return {**row, **changes}


def erp(key: str, **changes: Any) -> dict[str, Any]:
    """The ERP's record agreeing with billing(key)."""
    row = {
        "externalId": key,
        "customerRef": "C-1",
        "amount": 120.0,
        "taxTotal": 20.0,
        "currencyCode": "EUR",
        "status": "closed",
        "lastModified": OLD,
    }
    return {**row, **changes}


def write_csv(path: Path, rows: Iterable[dict[str, Any]], header: list[str] | None = None) -> None:
    rows = list(rows)
    columns = header or list(BILLING_FIELDS.values())
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def config_data(**changes: Any) -> dict[str, Any]:
    """reconcile.yaml's content with one reconciliation `invoices` of billing.csv and
    erp.jsonl; `changes` replace its keys."""
    invoices = {
        "object": "invoice",
        "key": "invoice_id",
        "schedule": "15m",
        "grace": "30m",
        "scope": {"updated_within": "35d"},
        "sources": {
            "billing": {"type": "file", "path": "billing*.csv", "fields": BILLING_FIELDS},
            "erp": {"type": "file", "path": "erp.jsonl", "fields": ERP_FIELDS},
        },
        "compare": COMPARE,
    }
    return copy.deepcopy({"reconciliations": {"invoices": {**invoices, **changes}}})


@pytest.fixture
def exports(tmp_path: Path) -> Callable[..., None]:
    """Write billing.csv and erp.jsonl (the records of each side)."""

    def write(billing_rows: Iterable[dict], erp_rows: Iterable[dict]) -> None:
        write_csv(tmp_path / "billing.csv", billing_rows)
        write_jsonl(tmp_path / "erp.jsonl", erp_rows)

    return write


@pytest.fixture
def reconcile(db: psycopg.Connection, tmp_path: Path) -> Callable[..., RunReport]:
    """Run `invoices` (of config_data(**changes)) on the test database at NOW (or `now`)."""

    def run(now: datetime = NOW, **changes: Any) -> RunReport:
        config: ReconcileConfig = parse_reconcile_config(config_data(**changes), base=tmp_path)
        return run_reconciliation(db, "invoices", config.reconciliations["invoices"], {}, now)

    return run

"""The sandbox's systems of record: what they hold follows the traffic's telemetry, they
drift at their stated shares under a seed, their list endpoints page through every record
once (ERP only with its token), billing's CSV export is well-formed and replaced whole, and
the demo's reconcile.yaml points at all of it."""

from __future__ import annotations

import csv
import glob
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from demo.__main__ import reconciliation_environment
from demo.exports import COLUMNS, export_billing_invoices
from demo.records import CUSTOMERS, DriftMix, SystemsOfRecord
from demo.records_api import ERP_TOKEN_ENV, LISTS
from demo.sandbox import deadlines, replay_applier, sandbox_app, stage_systems
from demo.traffic import CHAOS, NS, TrafficGenerator
from reconcile.load import load_reconcile_config
from sla.policy import load_policy
from tests.support.services import running_app

TRANSACTIONS = 3000
START_NS = time.time_ns() - 2 * 86_400 * NS  # of every test's traffic, 30 s apart
TOKEN = "test-erp-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Shares large enough that every kind of drift shows dozens of times in TRANSACTIONS.
DRIFT = DriftMix(
    tax_rounding=0.05,
    currency=0.03,
    status_lag=0.05,
    duplicate_payment=0.04,
    contract_version=0.05,
    customer_currency=0.05,
    customer_status=0.05,
)


def _traffic(records: SystemsOfRecord, count: int = TRANSACTIONS) -> list[ReadableSpan]:
    """`count` backdated transactions of the chaos mix told to `records`; their spans."""
    policy = load_policy()
    spans = InMemorySpanExporter()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(spans))
    generator = TrafficGenerator(
        tracer,
        LoggerProvider(),
        policy.catalog(),
        stage_systems(policy),
        "http://127.0.0.1:9",  # never called: every flow here is backdated
        mix=CHAOS,
        deadlines=deadlines(policy),
        records=records,
    )
    for i in range(count):
        generator.transaction(started_ns=START_NS + i * 30 * NS)
    generator.close()
    return list(spans.get_finished_spans())


@pytest.fixture(scope="module")
def seeded() -> tuple[SystemsOfRecord, list[ReadableSpan]]:
    records = SystemsOfRecord(seed=11, drift=DRIFT)
    return records, _traffic(records)


def _by(records: SystemsOfRecord, collection: str) -> dict[str, dict[str, Any]]:
    target = records.collections[collection]
    return {record[target.key_field]: record for record in records.snapshot(collection)}


def _stage_spans(spans: list[ReadableSpan], stage: str) -> list[ReadableSpan]:
    """The stage's own spans (not the HTTP calls inside, nor redeliveries)."""
    return [
        s
        for s in spans
        if s.attributes
        and s.attributes.get("q2c.stage") == stage
        and not s.name.endswith("redelivered")
    ]


def _near(count: int, share: float, draws: int) -> bool:
    """Whether `count` is what evenly spread drift gives `draws` records at `share`."""
    return abs(count - share * draws) <= 1.5


def test_an_invoice_whose_erp_posting_failed_is_in_billing_not_in_erp(seeded) -> None:
    records, spans = seeded
    billing, erp = _by(records, "billing.invoices"), _by(records, "erp.invoices")
    posted = {s.attributes["q2c.invoice_id"] for s in _stage_spans(spans, "invoice_posted")}
    recorded = _stage_spans(spans, "invoice_recorded")
    rejected = {
        s.attributes["q2c.invoice_id"] for s in recorded if s.status.status_code is StatusCode.ERROR
    }
    reached = {s.attributes["q2c.invoice_id"] for s in recorded} - rejected

    assert set(billing) == posted  # the telemetry's invoice IDs are the records' IDs
    assert len(rejected) > 20
    assert rejected <= set(billing) - set(erp)
    # Missing in ERP: rejected there, or stalled before reaching it; nothing else.
    assert set(billing) - set(erp) == posted - reached
    assert set(erp) == reached


def test_erp_drifts_by_itself_at_its_shares_beside_the_traffics_mismatches(seeded) -> None:
    records, spans = seeded
    billing, erp = _by(records, "billing.invoices"), _by(records, "erp.invoices")
    both = [key for key in erp if key in billing]
    same_amount = [k for k in both if float(billing[k]["total"]) == erp[k]["amount"]]
    cent_off = [
        k for k in same_amount if round(erp[k]["taxTotal"] - float(billing[k]["tax"]), 2) == 0.01
    ]
    other_currency = [k for k in both if erp[k]["currencyCode"] != billing[k]["currency"]]
    erp_amounts = {
        s.attributes["q2c.invoice_id"]: s.attributes["q2c.amount"]
        for s in _stage_spans(spans, "invoice_recorded")
    }

    assert len(both) == len(erp)
    # The traffic's amount mismatch: ERP holds what its telemetry reported, 90 % of billing's.
    assert all(erp[k]["amount"] == erp_amounts[k] for k in erp)
    mismatched = [k for k in both if k not in same_amount]
    assert mismatched and all(
        erp[k]["amount"] == round(float(billing[k]["total"]) * 0.9, 2) for k in mismatched
    )
    assert DRIFT.tax_rounding * len(same_amount) - 2 <= len(cent_off)
    assert len(cent_off) <= DRIFT.tax_rounding * len(erp) + 2
    assert _near(len(other_currency), DRIFT.currency, len(erp))


def test_payments_settle_invoices_and_some_never_catch_up(seeded) -> None:
    records, _ = seeded
    billing_invoices, erp_invoices = _by(records, "billing.invoices"), _by(records, "erp.invoices")
    erp_payments = _by(records, "erp.payments")
    billing_payments = Counter(p["reference"] for p in records.snapshot("billing.payments"))
    closings = [p for p in erp_payments.values() if p["invoiceRef"] in erp_invoices]
    lagging = [p for p in closings if erp_invoices[p["invoiceRef"]]["status"] == "open"]
    twice = [ref for ref, n in billing_payments.items() if n == 2]

    assert set(billing_payments.values()) == {1, 2}
    assert _near(len(twice), DRIFT.duplicate_payment, len(billing_payments))
    assert _near(len(lagging), DRIFT.status_lag, len(closings))
    # A payment names an invoice the traffic posted, for its total, in its currency.
    paid = [p for p in records.snapshot("billing.payments") if p["invoice"] in billing_invoices]
    assert len(paid) > 0.9 * len(billing_payments)
    assert all(
        (p["amount"], p["currency"], p["account"])
        == (float(invoice["total"]), invoice["currency"], invoice["account"])
        for p in paid
        for invoice in [billing_invoices[p["invoice"]]]
    )
    settled_in_billing = {p["invoice"] for p in records.snapshot("billing.payments")}
    assert all(
        billing_invoices[key]["state"] == ("paid" if key in settled_in_billing else "open")
        for key in billing_invoices
    )
    # Settlements that never reached billing: applied in ERP, missing in billing.
    assert set(erp_payments) - set(billing_payments)
    assert set(billing_payments) <= set(erp_payments)


def test_customers_drift_between_crm_and_billing_at_their_shares(seeded) -> None:
    records, _ = seeded
    crm, billing = _by(records, "crm.accounts"), _by(records, "billing.customers")

    assert set(crm) == set(billing) and len(crm) == CUSTOMERS
    other_currency = [k for k in crm if crm[k]["CurrencyIsoCode"] != billing[k]["currency"]]
    churned = [k for k in crm if crm[k]["Type"] == "Former Customer"]
    assert all(billing[k]["status"] == "active" for k in churned)
    assert _near(len(other_currency), DRIFT.customer_currency, CUSTOMERS)
    assert _near(len(churned), DRIFT.customer_status, CUSTOMERS)


def test_a_won_opportunity_whose_activation_failed_has_no_billing_subscription(seeded) -> None:
    records, spans = seeded
    crm, billing = _by(records, "crm.opportunities"), _by(records, "billing.subscriptions")
    won = {s.attributes["q2c.order_id"] for s in _stage_spans(spans, "opportunity_closed_won")}
    activated = {
        s.attributes["q2c.order_id"]
        for s in _stage_spans(spans, "subscription_activated")
        if s.status.status_code is not StatusCode.ERROR
    }
    other_version = [k for k in billing if billing[k]["version"] != crm[k]["ContractVersion__c"]]

    assert set(crm) == won and set(billing) == activated
    assert len(won - activated) > 20 and activated <= won
    assert _near(len(other_version), DRIFT.contract_version, len(billing))
    assert all(
        (billing[k]["amount"], billing[k]["currency"])
        == (crm[k]["Amount"], crm[k]["CurrencyIsoCode"])
        for k in billing
    )


def test_the_same_seed_gives_the_same_records() -> None:
    first, second = SystemsOfRecord(seed=3), SystemsOfRecord(seed=3)
    _traffic(first, 400), _traffic(second, 400)

    for name in first.collections:
        assert first.snapshot(name) == second.snapshot(name), name


def test_the_window_keeps_the_last_transactions_records_in_every_system_at_once() -> None:
    records = SystemsOfRecord(seed=5, kept=100)
    _traffic(records, 1000)
    billing, erp = _by(records, "billing.invoices"), _by(records, "erp.invoices")

    assert 0 < len(billing) <= 100 and len(records.snapshot("crm.accounts")) == CUSTOMERS
    numbers = sorted(int(key.rsplit("-", 1)[1]) for key in billing)
    assert numbers[0] > 900  # the invoices of the last 100 transactions only
    assert set(erp) <= set(billing)  # ERP's copy left with billing's


@pytest.fixture(scope="module")
def sandbox(seeded) -> Iterator[str]:
    records, _ = seeded
    with running_app(sandbox_app(records, lambda applied: None, TOKEN)) as url:
        yield url


def _walk(client: httpx.Client, url: str, items: str, next_link: str) -> tuple[list, int]:
    """Every record of a list, following its next links; and how many pages it took."""
    records, pages = [], 0
    while url:
        page = client.get(url, headers=AUTH)
        assert page.status_code == 200, page.text
        records += page.json()[items]
        url, pages = _dotted(page.json(), next_link), pages + 1
    return records, pages


def _dotted(document: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        document = document.get(part) if isinstance(document, dict) else None
    return document


@pytest.mark.parametrize("path", sorted(LISTS))
def test_each_list_pages_through_every_record_once(seeded, sandbox: str, path: str) -> None:
    records, _ = seeded
    collection = LISTS[path][0]
    crm = path.startswith("/crm")
    items, next_link = ("records", "nextRecordsUrl") if crm else ("data", "links.next")
    with httpx.Client() as client:
        walked, pages = _walk(client, f"{sandbox}{path}?limit=37", items, next_link)
    held = records.snapshot(collection)
    id_field = records.collections[collection].id_field

    assert [r[id_field] for r in walked] == [r[id_field] for r in held]
    assert pages == -(-len(held) // 37) and len(held) > 37


def test_erp_refuses_a_missing_or_wrong_token_and_bad_paging(sandbox: str) -> None:
    with httpx.Client(base_url=sandbox) as client:
        missing = client.get("/erp/invoices")
        wrong = client.get("/erp/payments", headers={"Authorization": "Bearer nope"})
        billing = client.get("/billing/payments?limit=1")
        too_many = client.get("/billing/payments?limit=5000")
        forged = client.get("/erp/invoices?cursor=bm90LW91cnM", headers=AUTH)
        write = client.post("/erp/invoice_posting/invoice_recorded", content=b"{}")

    for refused in (missing, wrong):
        assert refused.status_code == 401
        assert refused.json()["message"] == "a valid Bearer token is required"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert billing.status_code == 200 and len(billing.json()["data"]) == 1
    assert (too_many.status_code, forged.status_code) == (400, 400)
    assert "limit must be 1 to 1000" in too_many.json()["message"]
    assert write.json()["status"] == "applied"  # the lists leave the systems' writes be


def test_a_replayed_erp_posting_puts_the_invoice_in_erp_and_in_its_list() -> None:
    records = SystemsOfRecord(seed=11)
    spans = _traffic(records, 600)
    rejected = next(
        s
        for s in _stage_spans(spans, "invoice_recorded")
        if s.status.status_code is StatusCode.ERROR
    )
    invoice, correlation = (
        rejected.attributes["q2c.invoice_id"],
        rejected.attributes["q2c.correlation_id"],
    )
    app = sandbox_app(records, replay_applier(TracerProvider(), records), TOKEN)
    with running_app(app) as url, httpx.Client(base_url=url) as client:
        before = _walk(client, f"{url}/erp/invoices?limit=1000", "data", "links.next")[0]
        replay = client.post(
            "/erp/invoice_posting/invoice_recorded",
            content=b"{}",
            headers={"Idempotency-Key": "q2c-dl-1", "X-Correlation-Id": correlation},
        )
        after = _walk(client, f"{url}/erp/invoices?limit=1000", "data", "links.next")[0]

    assert replay.json()["status"] == "applied"
    assert invoice not in {r["externalId"] for r in before}
    assert [r["externalId"] for r in after if r["externalId"] == invoice] == [invoice]


def test_the_billing_export_is_one_wellformed_csv_per_day_replaced_whole(
    seeded, tmp_path: Path
) -> None:
    records, _ = seeded
    files = export_billing_invoices(records, tmp_path)
    invoices = records.snapshot("billing.invoices")
    rows = []
    for path in files:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            assert tuple(reader.fieldnames or ()) == COLUMNS
            day = [dict(row) for row in reader]
        assert {row["issued"][:10] for row in day} == {path.stem.removeprefix("invoices-")}
        rows += day
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in invoices)
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in files}  # no temporaries
    assert len(files) == len({r["issued"][:10] for r in invoices}) > 1

    # A reader holding the old file keeps reading it whole while the export replaces it;
    # a day whose invoices have left the window loses its file.
    old_text = files[-1].read_text()
    held = files[-1].open()
    stale = tmp_path / "invoices-2020-01-01.csv"
    stale.write_text("id\n")
    later = SystemsOfRecord(seed=11, kept=10)
    _traffic(later, 200)
    rewritten = export_billing_invoices(later, tmp_path)
    with held:
        assert held.read() == old_text
    assert sorted(tmp_path.iterdir()) == rewritten
    assert sum(len(p.read_text().splitlines()) - 1 for p in rewritten) == len(
        later.snapshot("billing.invoices")
    )


def test_the_demo_reconcile_yaml_points_at_the_sandbox_lists_and_export(
    seeded, sandbox: str, tmp_path: Path
) -> None:
    records, _ = seeded
    port = int(sandbox.rsplit(":", 1)[1])
    environ = reconciliation_environment(port, tmp_path)
    config_path = Path(environ["Q2C_RECONCILE_CONFIG"])
    config = yaml.safe_load(config_path.read_text())
    export_billing_invoices(records, tmp_path / "exports" / "billing")
    load_reconcile_config(config_path)  # valid as reconcile.yaml, every source included

    assert config_path.parent == tmp_path and environ[ERP_TOKEN_ENV]
    reconciliations = config["reconciliations"]
    assert set(reconciliations) == {"invoices", "payments", "customers", "subscriptions"}
    for name, spec in reconciliations.items():
        assert {"object", "key", "schedule", "grace", "scope", "sources", "compare"} <= set(spec)
        assert spec["schedule"] == "1m"
        for source in spec["sources"].values():
            assert spec["key"] in source["fields"] and "updated_at" in source["fields"]
        for field in spec["compare"]:
            givers = [s for s in spec["sources"].values() if field in s["fields"]]
            assert len(givers) == 2, (name, field)
    files = reconciliations["invoices"]["sources"]["billing"]
    assert files["type"] == "file" and glob.glob(files["path"])
    # Every record each source serves has the fields the source maps, and a status its map
    # knows: the demo's breaks are the seeded drift, not the config's gaps.
    walked = 0
    with httpx.Client() as client:
        for spec in reconciliations.values():
            status_map = spec["compare"]["status"]["map"]
            for name, source in spec["sources"].items():
                if source["type"] == "http":
                    assert source["url"].startswith(f"http://127.0.0.1:{port}/")
                    erp = source["url"].split("/")[3] == "erp"
                    headers = {"Authorization": f"Bearer ${{{ERP_TOKEN_ENV}}}"} if erp else None
                    assert source.get("headers") == headers, name
                    served = _walk(client, source["url"], source["items"], source["next"])[0]
                    walked += 1
                else:
                    with open(glob.glob(source["path"])[0], newline="") as f:
                        served = list(csv.DictReader(f))
                assert all(set(source["fields"].values()) <= set(r) for r in served), name
                statuses = {r[source["fields"]["status"]] for r in served}
                assert statuses <= set(status_map[name]), (name, statuses)
    assert walked == 7


def test_the_sandbox_is_healthy_only_once_its_history_is_in(seeded) -> None:
    # The supervisor starts the scheduler after the sandbox is healthy: its first
    # reconciliations then see whole systems of record, not half a history.
    records, _ = seeded
    ready = threading.Event()
    with running_app(sandbox_app(records, lambda applied: None, TOKEN, ready)) as url:
        before = httpx.get(f"{url}/healthz")
        ready.set()
        after = httpx.get(f"{url}/healthz")

    assert (before.status_code, before.json()) == (503, {"status": "starting: sending the history"})
    assert (after.status_code, after.json()) == (200, {"status": "ok"})

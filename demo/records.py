"""The records the sandbox's CRM, billing and ERP hold: customers, subscriptions (CRM's won
opportunities), invoices and payments, each in its own system's field names, kept from the
traffic's stage outcomes.

What the telemetry says is what the records hold: an invoice posted in billing is a billing
invoice under the ID its transaction's telemetry carries; an ERP posting that failed leaves
ERP without it until a replay posts it; a settlement that never reached billing leaves the
invoice open there. Beside the traffic's own failures each system drifts by itself at small
shares (DriftMix), drawn evenly from a seeded generator so that a test can count them.

Memory is bounded: the records of the last KEPT_TRANSACTIONS transactions younger than
WINDOW (the reconciliations' scope) are kept, each transaction's records leaving every
system at once, so the window's edge never shows as a break; the CUSTOMERS accounts are
kept throughout.
"""

from __future__ import annotations

import random
import threading
from bisect import bisect_right
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from demo.shares import EvenShares

Record = dict[str, Any]
NS = 1_000_000_000
CUSTOMERS = 400  # accounts CUST-0000 … CUST-0399, in CRM and billing alike
KEPT_TRANSACTIONS = 20_000  # about 28 MB of records (docs/demo-reconciliation.md)
WINDOW = timedelta(days=35)
CENT = Decimal("0.01")
# VAT or sales tax included in an invoice's total, by legal entity.
TAX_RATES = {"DE01": Decimal("0.19"), "UK01": Decimal("0.20"), "US02": Decimal("0.0725")}
ENTITY_CURRENCY = {"DE01": "EUR", "UK01": "GBP", "US02": "USD"}
_NAMES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell")
_SUFFIXES = ("GmbH", "Ltd", "Inc", "AG", "LLC")


@dataclass(frozen=True)
class DriftMix:
    """Share of records a system gets wrong by itself (the traffic's failures add theirs)."""

    tax_rounding: float = 0.01  # of ERP invoices: ERP rounds tax per line, a cent off
    currency: float = 0.004  # of ERP invoices: booked in the legal entity's own currency
    status_lag: float = 0.01  # of ERP invoices paid: ERP never closes the invoice
    duplicate_payment: float = 0.005  # of billing payments: recorded twice
    contract_version: float = 0.01  # of billing subscriptions: another version than CRM's
    customer_currency: float = 0.005  # of customers: CRM's currency is another
    customer_status: float = 0.005  # of customers: churned in CRM, still active in billing


REALISTIC_DRIFT = DriftMix()


def iso(at_ns: int) -> str:
    """An ISO 8601 UTC time to the millisecond, as the systems' APIs write it."""
    at = datetime.fromtimestamp(at_ns / NS, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Collection:
    """One system's list of one kind of record, in the order the system created them: each
    record a JSON object under an id of the system's own (`id_field`), found by its business
    key (`key_field`, which duplicates share), its last change in `modified_field`. Not
    thread-safe by itself: SystemsOfRecord guards it."""

    def __init__(self, id_field: str, id_format: str, key_field: str, modified_field: str):
        self.id_field, self.id_format = id_field, id_format
        self.key_field, self.modified_field = key_field, modified_field
        self._records: dict[int, Record] = {}
        self._ids: list[int] = []  # ascending: the order pages walk
        self._by_key: defaultdict[str, list[int]] = defaultdict(list)
        self._next = 1

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def add(self, record: Record, at_ns: int) -> int:
        """Store `record` (its id and last-modified time filled in); returns its number."""
        number = self._next
        self._next += 1
        self._records[number] = {
            self.id_field: self.id_format.format(number),
            **record,
            self.modified_field: iso(at_ns),
        }
        self._ids.append(number)
        self._by_key[record[self.key_field]].append(number)
        return number

    def update(self, key: str, at_ns: int, **changes: Any) -> int:
        """Change every record of `key` (duplicates too); returns how many there were."""
        numbers = self._by_key.get(key, [])
        for number in numbers:
            self._records[number].update(changes, **{self.modified_field: iso(at_ns)})
        return len(numbers)

    def remove(self, number: int) -> None:
        """Forget a record (leaving the window)."""
        record = self._records.pop(number)
        del self._ids[bisect_right(self._ids, number) - 1]
        numbers = self._by_key[record[self.key_field]]
        numbers.remove(number)
        if not numbers:
            del self._by_key[record[self.key_field]]

    def with_key(self, key: str) -> list[Record]:
        """Copies of the records of `key`."""
        return [dict(self._records[n]) for n in self._by_key.get(key, [])]

    def page(self, after: int, limit: int) -> tuple[list[Record], int | None]:
        """Copies of up to `limit` records after number `after`, and the number to continue
        after (None on the last page). Keyset order: a walk sees each record once, however
        many are added or leave meanwhile."""
        start = bisect_right(self._ids, after)
        numbers = self._ids[start : start + limit]
        more = start + limit < len(self._ids)
        return [dict(self._records[n]) for n in numbers], (numbers[-1] if more else None)

    def __iter__(self) -> Iterator[Record]:
        return (dict(record) for record in self._records.values())


class Page(NamedTuple):
    """Records of one page, the number to continue after (None: the last page), and how
    many records the list holds."""

    records: list[Record]
    after: int | None
    total: int


class SystemsOfRecord:
    """The CRM, billing and ERP records, fed by `observe` (every stage the traffic sends)
    and `replayed` (a stage a replay delivered); thread-safe."""

    def __init__(
        self,
        seed: int = 7,
        since_ns: int = 0,
        drift: DriftMix = REALISTIC_DRIFT,
        kept: int = KEPT_TRANSACTIONS,
        window: timedelta = WINDOW,
    ) -> None:
        """`since_ns`: when the customers' accounts were last changed (before any traffic)."""
        self.lock = threading.Lock()
        self.kept, self.window_ns = kept, int(window.total_seconds()) * NS
        rng = random.Random(seed)
        shares = {f.name: getattr(drift, f.name) for f in fields(drift)}

        def spread(*names: str) -> EvenShares:
            return EvenShares({name: shares[name] for name in names}, rng)

        self._erp_invoice_drift = spread("tax_rounding", "currency")
        self._erp_close_drift = spread("status_lag")
        self._payment_drift = spread("duplicate_payment")
        self._subscription_drift = spread("contract_version")
        self.collections = {
            "crm.accounts": Collection("Id", "001Dn{:012d}", "AccountNumber", "LastModifiedDate"),
            "crm.opportunities": Collection(
                "Id", "006Dn{:012d}", "OrderNumber__c", "LastModifiedDate"
            ),
            "billing.customers": Collection("id", "cus_{:08d}", "accountNumber", "updated"),
            "billing.invoices": Collection("number", "{:d}", "id", "updated"),
            "billing.payments": Collection("id", "py_{:08d}", "reference", "updated"),
            "billing.subscriptions": Collection("id", "sub_{:08d}", "order", "updated"),
            "erp.invoices": Collection("internalId", "{:d}", "externalId", "lastModified"),
            "erp.payments": Collection("internalId", "{:d}", "externalId", "lastModified"),
        }
        # correlation ID → (started, the records it created): the window, oldest first.
        self._transactions: OrderedDict[str, tuple[int, list[tuple[Collection, int]]]] = (
            OrderedDict()
        )
        self._failed: dict[str, dict[str, Any]] = {}  # correlation ID → a failed stage's attrs
        self._seed_customers(rng, spread("customer_currency", "customer_status"), since_ns)

    def observe(self, stage: str, attrs: dict[str, Any], at_ns: int, applied: bool) -> None:
        """A stage the traffic sent: its write `applied` in its system, or failed (then kept
        for a replay)."""
        correlation = attrs["q2c.correlation_id"]
        with self.lock:
            self._transaction(correlation, at_ns)
            if applied:
                self._apply(stage, attrs, at_ns)
            else:
                self._failed[correlation] = {**attrs, "q2c.stage": stage}

    def replayed(self, correlation: str, stage: str, at_ns: int) -> bool:
        """A replay delivered `stage` of `correlation`: its write applies now; False if this
        transaction's failed stage is not known (left the window, or never failed here)."""
        with self.lock:
            attrs = self._failed.get(correlation)
            if attrs is None or attrs["q2c.stage"] != stage:
                return False
            del self._failed[correlation]
            self._apply(stage, attrs, at_ns)
            return True

    def page(self, collection: str, after: int, limit: int) -> Page:
        """A page of `collection` ("erp.invoices", …): see Collection.page."""
        with self.lock:
            target = self.collections[collection]
            return Page(*target.page(after, limit), len(target))

    def snapshot(self, collection: str) -> list[Record]:
        """Copies of every record of `collection`, in the system's order."""
        with self.lock:
            return list(self.collections[collection])

    def _transaction(self, correlation: str, at_ns: int) -> None:
        if correlation in self._transactions:
            return
        self._transactions[correlation] = (at_ns, [])
        oldest = next(iter(self._transactions.values()))[0]
        while len(self._transactions) > self.kept or oldest < at_ns - self.window_ns:
            gone, (_, created) = self._transactions.popitem(last=False)
            self._failed.pop(gone, None)
            for collection, number in created:
                collection.remove(number)
            oldest = next(iter(self._transactions.values()))[0]

    def _add(self, collection: str, correlation: str, record: Record, at_ns: int) -> None:
        target = self.collections[collection]
        number = target.add(record, at_ns)
        if correlation in self._transactions:  # else: it left the window before its replay
            self._transactions[correlation][1].append((target, number))

    def _apply(self, stage: str, attrs: dict[str, Any], at_ns: int) -> None:
        """What a stage's write does to the records (stages that hold none do nothing)."""
        correlation = attrs["q2c.correlation_id"]
        invoice, customer = attrs["q2c.invoice_id"], attrs["q2c.customer_id"]
        amount = Decimal(str(attrs["q2c.amount"])).quantize(CENT)
        currency, entity = attrs["q2c.currency"], attrs["q2c.legal_entity"]
        rate = TAX_RATES[entity]
        tax = (amount * rate / (1 + rate)).quantize(CENT, ROUND_HALF_UP)
        if stage == "opportunity_closed_won":
            record = {
                "OrderNumber__c": attrs["q2c.order_id"],
                "AccountNumber__c": customer,
                "Amount": float(amount),
                "CurrencyIsoCode": currency,
                "ContractVersion__c": attrs["q2c.contract_version"],
                "StageName": "Closed Won",
            }
            self._add("crm.opportunities", correlation, record, at_ns)
        elif stage == "subscription_activated":
            version = attrs["q2c.contract_version"]
            if self._subscription_drift.next() == "contract_version":
                version = f"v{int(version[1:]) % 3 + 1}"
            record = {
                "order": attrs["q2c.order_id"],
                "account": customer,
                "amount": float(amount),
                "currency": currency,
                "version": version,
                "status": "active",
                "created": iso(at_ns),
            }
            self._add("billing.subscriptions", correlation, record, at_ns)
        elif stage == "invoice_posted":
            record = {
                "id": invoice,
                "account": customer,
                "total": str(amount),
                "tax": str(tax),
                "currency": currency,
                "state": "open",
                "issued": iso(at_ns),
            }
            self._add("billing.invoices", correlation, record, at_ns)
        elif stage == "invoice_recorded":
            drift = self._erp_invoice_drift.next()
            if drift == "tax_rounding":
                tax += CENT
            if drift == "currency":
                currency = _other_currency(currency, entity)
            record = {
                "externalId": invoice,
                "customerRef": customer,
                "amount": float(amount),
                "taxTotal": float(tax),
                "currencyCode": currency,
                "status": "open",
                "subsidiary": entity,
            }
            self._add("erp.invoices", correlation, record, at_ns)
        elif stage == "payment_applied":
            record = {
                "externalId": attrs["q2c.payment_id"],
                "customerRef": customer,
                "invoiceRef": invoice,
                "amount": float(amount),
                "currencyCode": currency,
                "status": "applied",
            }
            self._add("erp.payments", correlation, record, at_ns)
            erp_invoices = self.collections["erp.invoices"]
            if invoice in erp_invoices and self._erp_close_drift.next() != "status_lag":
                erp_invoices.update(invoice, at_ns, status="closed")
        elif stage == "billing_settled":
            record = {
                "reference": attrs["q2c.payment_id"],
                "account": customer,
                "invoice": invoice,
                "amount": float(amount),
                "currency": currency,
                "status": "succeeded",
                "created": iso(at_ns),
            }
            copies = 2 if self._payment_drift.next() == "duplicate_payment" else 1
            for _ in range(copies):
                self._add("billing.payments", correlation, record, at_ns)
            self.collections["billing.invoices"].update(invoice, at_ns, state="paid")

    def _seed_customers(self, rng: random.Random, drift: EvenShares, at_ns: int) -> None:
        for n in range(CUSTOMERS):
            number = f"CUST-{n:04d}"
            name = f"{rng.choice(_NAMES)} {rng.choice(_SUFFIXES)} {n}"
            entity = rng.choice(tuple(ENTITY_CURRENCY))
            currency = ENTITY_CURRENCY[entity]
            crm_currency, crm_type = currency, "Customer"
            match drift.next():
                case "customer_currency":
                    crm_currency = _other_currency(currency, entity)
                case "customer_status":
                    crm_type = "Former Customer"
            crm = {
                "AccountNumber": number,
                "Name": name,
                "CurrencyIsoCode": crm_currency,
                "Type": crm_type,
                "LegalEntity__c": entity,
            }
            billing = {
                "accountNumber": number,
                "name": name,
                "currency": currency,
                "status": "active",
                "entity": entity,
            }
            self.collections["crm.accounts"].add(crm, at_ns)
            self.collections["billing.customers"].add(billing, at_ns)


def _other_currency(currency: str, entity: str) -> str:
    """A currency other than `currency`: the legal entity's own, else the first other."""
    own = ENTITY_CURRENCY[entity]
    return own if own != currency else next(c for c in ("EUR", "USD", "GBP") if c != currency)

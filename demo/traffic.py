"""The demo's traffic generator: quote-to-cash flows for all five processes, instrumented
with the OpenTelemetry SDK and sent through the collector exactly as a customer's
middleware would, with a mix of realistic failures per process.

Live flows deliver each downstream record to the sandbox targets over HTTP; what the target
answers decides the stage's outcome, and an undeliverable record becomes a dead letter whose
replay target is that same endpoint. Backdated flows (history) decide outcomes by the mix.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta

import httpx
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from demo.records import CUSTOMERS, SystemsOfRecord
from demo.shares import EvenShares
from q2c.catalog import Process

NS = 1_000_000_000
# Invoices waiting for their payment: a payment transaction settles the oldest (beyond
# this many, the oldest stay unpaid, as some invoices do).
UNPAID_KEPT = 2_000
_INVOICE_FIELDS = (
    "q2c.customer_id",
    "q2c.invoice_id",
    "q2c.amount",
    "q2c.currency",
    "q2c.legal_entity",
)


@dataclass(frozen=True)
class FaultMix:
    """Share of a process's transactions hit by each fault (the rest flow cleanly; the
    shares add up to less than 1)."""

    timeout: float = 0.0
    rate_limited: float = 0.0
    validation: float = 0.0
    posting_rejected: float = 0.0
    duplicate: float = 0.0
    out_of_order: float = 0.0
    amount_mismatch: float = 0.0
    stalled: float = 0.0
    slow: float = 0.0  # a backlog: the objective's last stage arrives after its latency


@dataclass(frozen=True)
class TrafficMix:
    """A FaultMix per process; the processes not named get `default`."""

    default: FaultMix
    processes: Mapping[str, FaultMix] = field(default_factory=dict)

    def of(self, process: str) -> FaultMix:
        """The mix of `process`."""
        return self.processes.get(process, self.default)


# What `make demo` sends: an operation in fair health. Against sla.yaml's 99 % objectives
# (a budget of 1 % bad events: stalled before the objective's last stage, or over its
# latency) three processes spend a tenth to a third of their budget, invoice_posting about
# two thirds (its ERP posting queue backs up now and then) and subscription_amendment ten
# times its budget, fast enough to page (revenue schedule updates back up, and get
# rejected). A failed stage is a bad event only once its transaction stalls, 30 min to 1 h
# later; a slow one counts at once, which is why the two unhealthy processes owe most of
# their bad events to `slow`. docs/demo.md has the figures, tests/test_demo_mix.py holds
# the demo to them.
_HEALTHY = FaultMix(
    rate_limited=0.0008,
    validation=0.0005,
    duplicate=0.02,
    out_of_order=0.02,
    amount_mismatch=0.003,
    stalled=0.0005,
)
REALISTIC = TrafficMix(
    default=_HEALTHY,
    processes={
        "invoice_posting": FaultMix(
            posting_rejected=0.002,
            duplicate=0.02,
            out_of_order=0.02,
            amount_mismatch=0.003,
            stalled=0.0005,
            slow=0.0055,
        ),
        "subscription_amendment": FaultMix(
            timeout=0.002,
            rate_limited=0.002,
            validation=0.004,
            posting_rejected=0.006,
            duplicate=0.02,
            out_of_order=0.02,
            amount_mismatch=0.01,
            stalled=0.003,
            slow=0.09,
        ),
    },
)
# `--chaos`: every fault often, in every process; every objective is soon far past its
# budget and exceptions run into the hundreds.
CHAOS = TrafficMix(
    default=FaultMix(
        timeout=0.02,
        rate_limited=0.03,
        validation=0.03,
        posting_rejected=0.03,
        duplicate=0.05,
        out_of_order=0.05,
        amount_mismatch=0.03,
        stalled=0.03,
    )
)


def _faults(mix: FaultMix, rng: random.Random) -> EvenShares:
    """One process's faults at exactly their shares, evenly spread."""
    return EvenShares({f.name: getattr(mix, f.name) for f in fields(mix)}, rng)


class TrafficGenerator:
    """Emits transactions; `live` ones call the targets, backdated ones do not."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        logger_provider: LoggerProvider,
        catalog: tuple[Process, ...],
        systems: dict[tuple[str, str], str],
        targets_url: str,
        mix: TrafficMix = REALISTIC,
        seed: int = 7,
        deadlines: Mapping[str, tuple[str, timedelta]] | None = None,
        records: SystemsOfRecord | None = None,
    ) -> None:
        """`deadlines`: process → (stage, latency) that the `slow` fault makes the stage
        exceed (sla.yaml's objectives); without one a process has no slow transactions.
        `records`: the systems of record told of every stage's outcome."""
        self.tracer = tracer_provider.get_tracer("q2c.demo.middleware")
        self.logger = logger_provider.get_logger("q2c.demo.middleware")
        self.catalog = catalog
        self.systems = systems
        self.targets_url = targets_url.rstrip("/")
        self.rng = random.Random(seed)
        self.faults = {p.name: _faults(mix.of(p.name), self.rng) for p in catalog}
        self.deadlines = deadlines or {}
        self.records = records
        self.unpaid: deque[dict] = deque(maxlen=UNPAID_KEPT)
        self.http = httpx.Client(timeout=2.0)
        self.sequence = 0

    def close(self) -> None:
        """Release the HTTP client."""
        self.http.close()

    def transaction(self, started_ns: int | None = None) -> str:
        """One transaction of a random process; backdated when `started_ns` is given."""
        self.sequence += 1
        process = self.rng.choice(self.catalog)
        prefix = process.name.split("_")[0][:3].upper()
        correlation = f"{prefix}-{self.sequence:06d}-{self.rng.randrange(10**4):04d}"
        live = started_ns is None
        clock = time.time_ns() if started_ns is None else started_ns
        amount = round(self.rng.uniform(80, 24_000), 2)
        business = {
            "q2c.customer_id": f"CUST-{self.rng.randrange(CUSTOMERS):04d}",
            "q2c.order_id": f"SO-{self.sequence:06d}",
            "q2c.invoice_id": f"INV-2026-{self.sequence:06d}",
            "q2c.payment_id": f"PAY-{self.sequence:06d}",
            "q2c.amount": amount,
            "q2c.currency": self.rng.choice(("EUR", "USD", "GBP")),
            "q2c.legal_entity": self.rng.choice(("DE01", "US02", "UK01")),
            "q2c.contract_version": f"v{self.rng.randrange(1, 4)}",
        }
        # A payment pays an invoice the traffic posted, so that the systems of record hold
        # one invoice under one ID, whichever transaction's telemetry names it.
        if process.name == "invoice_posting":
            self.unpaid.append({name: business[name] for name in _INVOICE_FIELDS})
        elif process.name == "payment_application" and self.unpaid:
            business.update(self.unpaid.popleft())
            amount = business["q2c.amount"]
        fault = self.faults[process.name].next()
        stop_after = self.rng.randrange(1, len(process.stages)) if fault == "stalled" else None
        late_stage, backlog = len(process.stages), 0
        if fault == "slow" and process.name in self.deadlines:
            stage_name, latency = self.deadlines[process.name]
            late_stage = process.stages.index(stage_name)
            backlog = int(latency.total_seconds() * self.rng.uniform(1.2, 3.0)) * NS
        pending = []
        for index, stage in enumerate(process.stages):
            if stop_after is not None and index >= stop_after:
                break
            clock += self.rng.randrange(20, 400 if live else 900) * NS // 10
            # A backlog holds the late stage back: the stages before it happened that much
            # earlier, so that a live flow's late stage still arrives now.
            at = clock - backlog if index < late_stage else clock
            system = self.systems[(process.name, stage)]
            attrs = {
                "q2c.correlation_id": correlation,
                "q2c.process": process.name,
                "q2c.stage": stage,
                "q2c.system": system,
                **business,
            }
            if fault == "amount_mismatch" and system == "erp":
                attrs["q2c.amount"] = round(amount * 0.9, 2)
            failure = None
            transient = fault in ("timeout", "rate_limited", "validation", "posting_rejected")
            if index > 0 and transient and (index == 1 or self.rng.random() < 0.3):
                failure = fault
            pending.append((stage, system, attrs, at, failure, live))
            if failure:
                break
        if fault == "out_of_order":
            pending.reverse()
        for stage, system, attrs, at, failure, is_live in pending:
            self._stage(stage, system, attrs, at, failure, is_live, duplicate=fault == "duplicate")
        return correlation

    def _stage(
        self,
        stage: str,
        system: str,
        attrs: dict,
        at_ns: int,
        failure: str | None,
        live: bool,
        duplicate: bool,
    ) -> None:
        url = f"{self.targets_url}/{system}/{attrs['q2c.process']}/{stage}"
        record = {
            "correlation_id": attrs["q2c.correlation_id"],
            "stage": stage,
            "amount": attrs["q2c.amount"],
            "currency": attrs["q2c.currency"],
        }
        if attrs["q2c.process"] == "payment_application":  # as remittance data travels
            record["remit_to"] = {"holder": "Acme GmbH", "iban": "DE89370400440532013000"}
        payload = json.dumps(record)
        # Middleware authenticates to each system; Q2C masks the credential on every screen.
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer sandbox-{system}-f3a9c27d5e81",
            "X-Correlation-Id": attrs["q2c.correlation_id"],
            "X-Q2C-Process": attrs["q2c.process"],
            "X-Q2C-Stage": stage,
        }
        error = None
        if failure == "validation":
            error = self.rng.choice(_VALIDATION_ERRORS)
        elif live:
            error = self._deliver(url, payload, headers, failure)
        elif failure:
            error = _ERRORS[failure]
        if self.records is not None:
            self.records.observe(stage, attrs, at_ns, applied=error is None)
        span = self.tracer.start_span(
            f"{stage} ({system})", start_time=at_ns - NS // 5, attributes=attrs
        )
        # Inside the stage, the middleware's HTTP call to the system, as an HTTP client
        # instrumentation reports it: no Q2C attributes, nested under the stage's span.
        call = self.tracer.start_span(
            f"POST {system}",
            context=trace.set_span_in_context(span),
            kind=SpanKind.CLIENT,
            start_time=at_ns - NS // 6,
            attributes={"http.request.method": "POST", "url.full": url},
        )
        if error:
            span.set_attribute("error.type", error[0])
            span.set_status(Status(StatusCode.ERROR, error[1]))
            call.set_status(Status(StatusCode.ERROR, error[0]))
        call.end(end_time=at_ns - NS // 50)
        span.end(end_time=at_ns)
        if duplicate:
            self.tracer.start_span(
                f"{stage} ({system}) redelivered", start_time=at_ns - NS // 5, attributes=attrs
            ).end(end_time=at_ns)
        if error and error[2]:
            self.logger.emit(
                timestamp=at_ns,
                severity_number=SeverityNumber.ERROR,
                severity_text="ERROR",
                body=payload,
                attributes={
                    **attrs,
                    "q2c.dead_letter": True,
                    "q2c.replay.target": url,
                    "q2c.replay.method": "POST",
                    "error.type": error[0],
                    "exception.message": error[1],
                    **{f"q2c.replay.header.{k}": v for k, v in headers.items()},
                },
            )

    def _deliver(self, url: str, payload: str, headers: dict, failure: str | None) -> tuple | None:
        """POST the record to the target; a planned failure asks the target to misbehave."""
        if failure in ("timeout", "rate_limited", "posting_rejected"):
            headers = {**headers, "X-Sandbox-Fault": failure}
        try:
            response = self.http.post(url, content=payload, headers=headers)
        except httpx.TimeoutException:
            return _ERRORS["timeout"]
        except httpx.HTTPError as exc:
            return ("ConnectionError", f"could not reach {url}: {exc}", True)
        if response.status_code == 429:
            return _ERRORS["rate_limited"]
        if response.status_code == 409:
            return _ERRORS["posting_rejected"]
        if response.status_code >= 500:
            return ("UpstreamError", f"HTTP {response.status_code} from {url}", True)
        return None


# Rejected by the middleware's own checks: nothing to replay until the data is fixed.
_VALIDATION_ERRORS = (
    ("ValidationError", "invalid tax code T7 for legal entity DE01", False),
    ("ValidationError", "unknown product P-3391 on order line 2", False),
)
# failure → (error type, message, dead-lettered?)
_ERRORS = {
    "timeout": ("TimeoutError", "no answer within 2 s", True),
    "rate_limited": ("RateLimited", "429 Too Many Requests", True),
    "posting_rejected": ("PostingRejected", "posting period 2026-11 is closed", True),
}

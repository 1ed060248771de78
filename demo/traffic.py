"""The demo's traffic generator: quote-to-cash flows for all five processes, instrumented
with the OpenTelemetry SDK and sent through the collector exactly as a customer's
middleware would, with a configurable mix of realistic failures.

Live flows deliver each downstream record to the sandbox targets over HTTP; what the target
answers decides the stage's outcome, and an undeliverable record becomes a dead letter whose
replay target is that same endpoint. Backdated flows (history) decide outcomes by the mix.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

import httpx
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from q2c.catalog import Process

NS = 1_000_000_000


@dataclass(frozen=True)
class FaultMix:
    """Probability of each failure per transaction (the rest flow cleanly)."""

    timeout: float = 0.02
    rate_limited: float = 0.03
    validation: float = 0.03
    posting_rejected: float = 0.03
    duplicate: float = 0.05
    out_of_order: float = 0.05
    amount_mismatch: float = 0.03
    stalled: float = 0.03


class TrafficGenerator:
    """Emits transactions; `live` ones call the targets, backdated ones do not."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        logger_provider: LoggerProvider,
        catalog: tuple[Process, ...],
        systems: dict[tuple[str, str], str],
        targets_url: str,
        mix: FaultMix = FaultMix(),
        seed: int = 7,
    ) -> None:
        self.tracer = tracer_provider.get_tracer("q2c.demo.middleware")
        self.logger = logger_provider.get_logger("q2c.demo.middleware")
        self.catalog = catalog
        self.systems = systems
        self.targets_url = targets_url.rstrip("/")
        self.mix = mix
        self.rng = random.Random(seed)
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
            "q2c.customer_id": f"CUST-{self.rng.randrange(400):04d}",
            "q2c.order_id": f"SO-{self.sequence:06d}",
            "q2c.invoice_id": f"INV-2026-{self.sequence:06d}",
            "q2c.payment_id": f"PAY-{self.sequence:06d}",
            "q2c.amount": amount,
            "q2c.currency": self.rng.choice(("EUR", "USD", "GBP")),
            "q2c.legal_entity": self.rng.choice(("DE01", "US02", "UK01")),
            "q2c.contract_version": f"v{self.rng.randrange(1, 4)}",
        }
        fault = self._pick_fault()
        stop_after = self.rng.randrange(1, len(process.stages)) if fault == "stalled" else None
        pending = []
        for index, stage in enumerate(process.stages):
            if stop_after is not None and index >= stop_after:
                break
            clock += self.rng.randrange(20, 400 if live else 900) * NS // 10
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
            pending.append((stage, system, attrs, clock, failure, live))
            if failure:
                break
        if fault == "out_of_order":
            pending.reverse()
        for stage, system, attrs, at, failure, is_live in pending:
            self._stage(stage, system, attrs, at, failure, is_live, duplicate=fault == "duplicate")
        return correlation

    def _pick_fault(self) -> str | None:
        roll = self.rng.random()
        for name, probability in vars(self.mix).items():
            if roll < probability:
                return name
            roll -= probability
        return None

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
        span = self.tracer.start_span(
            f"{stage} ({system})", start_time=at_ns - NS // 5, attributes=attrs
        )
        if error:
            span.set_attribute("error.type", error[0])
            span.set_status(Status(StatusCode.ERROR, error[1]))
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

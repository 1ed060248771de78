"""Fake CRM, billing and ERP HTTP services that replays are delivered to.

Each system can be given a fault (unavailable → 503, rate_limited → 429 with Retry-After,
reject → 422, slow → answers after a delay) for its next N requests. Writes are idempotent
by `Idempotency-Key`: a second delivery with the same key changes nothing and says so.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SYSTEMS = ("crm", "billing", "erp")


@dataclass
class Fault:
    """What a system does to its next `remaining` requests."""

    mode: str  # unavailable | rate_limited | reject | slow
    remaining: int
    retry_after: int = 1
    delay_seconds: float = 0.0


@dataclass
class Applied:
    """A write the system accepted."""

    system: str
    path: str
    method: str
    idempotency_key: str | None
    body: bytes
    headers: dict[str, str]


@dataclass
class TargetState:
    """Faults, accepted writes and every request seen; safe to use from tests' threads."""

    faults: dict[str, Fault] = field(default_factory=dict)
    applied: list[Applied] = field(default_factory=list)
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)  # system, key, status
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(
        self, system: str, mode: str, count: int, retry_after: int = 1, delay_seconds: float = 0.0
    ) -> None:
        """Make `system` fail its next `count` requests in `mode`."""
        with self.lock:
            self.faults[system] = Fault(mode, count, retry_after, delay_seconds)

    def applied_keys(self) -> list[str | None]:
        """Idempotency keys of accepted writes, in order."""
        with self.lock:
            return [a.idempotency_key for a in self.applied]


# A live request may ask for one failure of its own (the traffic generator's fault mix);
# a replay of it then succeeds, the way a cleared fault lets a retry through.
_REQUESTED_FAULTS = {"timeout": 504, "rate_limited": 429, "posting_rejected": 409}
TIMEOUT_SECONDS = 2.5  # longer than the traffic generator waits


def create_targets(
    state: TargetState, on_applied: Callable[[Applied], None] | None = None
) -> Starlette:
    """The ASGI app serving /{crm,billing,erp}/… for `state`; `on_applied` is called for
    each write applied (not for duplicates)."""

    async def write(request: Request) -> JSONResponse:
        system = request.path_params["system"]
        if system not in SYSTEMS:
            return JSONResponse({"error": f"unknown system {system}"}, 404)
        key = request.headers.get("idempotency-key")
        body = await request.body()
        requested = request.headers.get("x-sandbox-fault")
        if requested in _REQUESTED_FAULTS:
            if requested == "timeout":
                await asyncio.sleep(TIMEOUT_SECONDS)
            status = _REQUESTED_FAULTS[requested]
            with state.lock:
                state.requests.append((system, key, status))
            return JSONResponse({"error": requested}, status, headers={"Retry-After": "1"})
        with state.lock:
            fault = state.faults.get(system)
            if fault and fault.remaining > 0:
                fault.remaining -= 1
            else:
                fault = None
        if fault and fault.mode == "slow":
            await asyncio.sleep(fault.delay_seconds)
        elif fault:
            status = {"unavailable": 503, "rate_limited": 429, "reject": 422}[fault.mode]
            headers = {"Retry-After": str(fault.retry_after)} if status in (429, 503) else {}
            with state.lock:
                state.requests.append((system, key, status))
            return JSONResponse({"error": fault.mode}, status, headers=headers)
        applied = Applied(
            system, request.url.path, request.method, key, body, dict(request.headers)
        )
        with state.lock:
            duplicate = key is not None and any(a.idempotency_key == key for a in state.applied)
            if not duplicate:
                state.applied.append(applied)
            state.requests.append((system, key, 200))
        if not duplicate and on_applied is not None:
            on_applied(applied)
        return JSONResponse(
            {"status": "duplicate" if duplicate else "applied", "idempotency_key": key}
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/{system}/{path:path}", write, methods=["POST", "PUT", "PATCH"]),
        ]
    )

"""The sandbox targets: faults clear, writes apply once per Idempotency-Key and say so."""

from __future__ import annotations

import httpx

from demo.targets import TargetState, create_targets
from tests.support.services import running_app


def test_targets_apply_a_write_once_per_key_and_recover_from_faults() -> None:
    state = TargetState()
    state.inject("erp", "unavailable", 1)
    with running_app(create_targets(state)) as url, httpx.Client(base_url=url) as client:
        headers = {"Idempotency-Key": "q2c-dl-abc"}
        down = client.post("/erp/invoice_posting/invoice_recorded", content=b"{}", headers=headers)
        first = client.post("/erp/invoice_posting/invoice_recorded", content=b"{}", headers=headers)
        again = client.post("/erp/invoice_posting/invoice_recorded", content=b"{}", headers=headers)
        asked = client.post("/billing/x/y", headers={"X-Sandbox-Fault": "rate_limited"})

    assert (down.status_code, down.headers["retry-after"]) == (503, "1")
    assert first.json() == {"status": "applied", "idempotency_key": "q2c-dl-abc"}
    assert again.json() == {"status": "duplicate", "idempotency_key": "q2c-dl-abc"}
    assert asked.status_code == 429
    assert state.applied_keys() == ["q2c-dl-abc"]

"""Requests share transactions, never failures: a batch the database fails (here through a
trigger that refuses one transaction's rows) fails alone, and the collector keeps taking
the others."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from collectors.group_commit import write_group
from collectors.mapping import AttributeMap
from collectors.observations import Observer
from collectors.otlp import PROTOBUF
from collectors.traces import decode_traces
from collectors.window import TimeWindow
from collectors.writer import PostgresWriter, StatementFailed
from sla.policy import load_policy
from tests.support.otlp import stage_span, traces_request

_POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.correlation_id = 'POISON' THEN RAISE EXCEPTION 'poisoned row'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON stage_events
FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


def _request(correlation_id: str, seq: int):
    span = stage_span(
        correlation_id, "invoice_posting", "invoice_posted", "billing", at_s=1, seq=seq
    )
    return traces_request(span)


@pytest.fixture
def poisoned(owner_db: psycopg.Connection) -> psycopg.Connection:
    owner_db.execute(_POISON)  # only the owner may add a trigger
    return owner_db


def test_a_failed_batch_fails_alone_in_its_group(poisoned, db_url: str) -> None:
    observer, window = Observer(AttributeMap()), TimeWindow(0, 2**63 - 1)
    batches = [
        decode_traces(_request(name, seq).SerializeToString(), PROTOBUF, observer, window)
        for name, seq in (("INV-60", 6000), ("POISON", 6010), ("INV-61", 6020))
    ]
    writer = PostgresWriter(db_url, load_policy().catalog())
    try:
        outcomes = write_group(writer, batches)
    finally:
        writer.close()

    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], StatementFailed) and "poisoned row" in str(outcomes[1])
    stored = poisoned.execute("SELECT correlation_id FROM spans ORDER BY 1").fetchall()
    assert stored == [("INV-60",), ("INV-61",)]


def test_the_collector_answers_503_for_the_failed_request_and_goes_on(
    poisoned, http: httpx.Client
) -> None:
    def post(correlation_id: str, seq: int) -> httpx.Response:
        body = _request(correlation_id, seq).SerializeToString()
        return http.post("/v1/traces", content=body, headers={"Content-Type": PROTOBUF})

    refused = post("POISON", 6030)
    accepted = post("INV-62", 6040)  # at once: the database is not taken for down

    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert accepted.status_code == 200
    assert poisoned.execute("SELECT count(*) FROM transactions").fetchone() == (1,)

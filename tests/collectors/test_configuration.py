"""Attribute mapping without code changes, and refusing unsafe collector configurations."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import psycopg
import pytest

from collectors.mapping import AttributeMap
from collectors.server import serve
from q2c.errors import Q2CError
from q2c.settings import Settings
from tests.support.otlp import kv, stage_span, traces_request
from tests.support.services import running_collector


def test_custom_attribute_keys_feed_the_canonical_fields(
    tmp_path: Path, db_url: str, db: psycopg.Connection
) -> None:
    mapping = tmp_path / "attributes.yaml"
    mapping.write_text(
        "correlation_id: [acme.txn, q2c.correlation_id]\n"
        "stage: acme.step\n"
        "invoice_id: [billing.invoice.number]\n"
    )
    span = stage_span("ignored", "invoice_posting", "x", "billing", at_s=1, seq=500)
    del span.attributes[:]
    span.attributes.extend(
        [
            kv("acme.txn", "ACME-77"),
            kv("q2c.process", "invoice_posting"),
            kv("acme.step", "invoice_posted"),
            kv("billing.invoice.number", "B-9"),
        ]
    )
    settings = Settings(database_url=None, attribute_map=mapping)
    with running_collector(settings, db_url) as url:
        response = httpx.post(
            f"{url}/v1/traces",
            content=traces_request(span).SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )

    assert response.status_code == 200
    assert db.execute(
        "SELECT correlation_id, current_stage, invoice_id FROM transactions"
    ).fetchall() == [("ACME-77", "invoice_posted", "B-9")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("correlation_idd: [x]\n", "unknown field 'correlation_idd'"),
        ("stage: []\n", "'stage' needs a key or a list of keys"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_a_bad_attribute_map_is_explained(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "attributes.yaml"
    path.write_text(content)

    with pytest.raises(Q2CError, match=re.escape(message)):
        AttributeMap.load(path)


def test_without_tokens_the_collector_refuses_to_listen_beyond_loopback() -> None:
    with pytest.raises(Q2CError, match=r"refusing to listen on 0\.0\.0\.0 without authentication"):
        serve(Settings(database_url=None), "postgresql://unused", "0.0.0.0", 4318)

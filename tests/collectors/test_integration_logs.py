"""Middleware integration logs over HTTP and from files with `q2c ingest`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest
from click.testing import CliRunner

from cli.main import main

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _line(**fields: object) -> bytes:
    return orjson.dumps(fields)


LINES = [
    _line(
        timestamp=NOW.isoformat(),
        correlation_id="PAY-1",
        process="payment_application",
        stage="payment_applied",
        system="erp",
        payment_id="PAY-1",
        amount="310.20",
        currency="EUR",
    ),
    b"{not json",
    _line(
        timestamp=(NOW + timedelta(seconds=5)).isoformat(),
        correlation_id="PAY-1",
        process="payment_application",
        stage="billing_settled",
        system="billing",
        status="error",
        error_type="RateLimited",
        error_message="429 from billing API",
        payload={"payment": "PAY-1"},
        replay_target="http://127.0.0.1:9/billing/settle",
        replay_headers={"Content-Type": "application/json", "X-Tenant": "acme"},
    ),
    _line(correlation_id="PAY-2", process="payment_application", stage="payment_applied"),
    _line(
        timestamp=int((NOW + timedelta(seconds=9)).timestamp() * 1000),
        correlation_id="PAY-3",
        process="payment_application",
        stage="payment_applied",
        status="maybe",
    ),
]


def test_http_endpoint_stores_records_and_names_rejected_lines(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    response = http.post("/v1/integration-logs", content=b"\n".join(LINES))

    assert response.status_code == 200
    assert response.json() == {
        "accepted": 2,
        "rejected": 3,
        "errors": [
            {"line": 2, "reason": response.json()["errors"][0]["reason"]},
            {"line": 4, "reason": "timestamp is required (RFC 3339 text or epoch number)"},
            {"line": 5, "reason": "status must be 'ok' or 'error', not 'maybe'"},
        ],
    }
    assert response.json()["errors"][0]["reason"].startswith("invalid JSON")
    letter = db.execute(
        "SELECT target_url, headers, payload, error_type FROM dead_letters"
    ).fetchone()
    assert letter == (
        "http://127.0.0.1:9/billing/settle",
        {"Content-Type": "application/json", "X-Tenant": "acme"},
        '{"payment":"PAY-1"}',
        "RateLimited",
    )
    assert db.execute("SELECT payment_id, amount, current_stage FROM transactions").fetchone() == (
        "PAY-1",
        Decimal("310.2"),
        "payment_applied",
    )
    assert db.execute("SELECT source, count(*) FROM log_records GROUP BY 1").fetchall() == [
        ("integration_log", 2)
    ]


def test_a_json_array_works_too_and_all_bad_is_a_400(http: httpx.Client) -> None:
    array = b"[" + b",".join([LINES[0], LINES[3]]) + b"]"
    assert http.post("/v1/integration-logs", content=array).json()["accepted"] == 1
    bad = http.post("/v1/integration-logs", content=LINES[3])
    assert bad.status_code == 400 and bad.json()["rejected"] == 1


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)


def test_ingest_command_reports_rejects_by_file_and_line_and_is_rerunnable(
    tmp_path: Path, db: psycopg.Connection, cli_env: None
) -> None:
    path = tmp_path / "middleware.jsonl"
    path.write_bytes(b"\n".join(LINES) + b"\n")

    first = CliRunner().invoke(main, ["ingest", str(path)])
    again = CliRunner().invoke(main, ["ingest", str(path)])

    assert first.exit_code == 2
    assert "accepted 2, rejected 3" in first.output
    assert f"{path}:4: timestamp is required" in first.output
    assert f"{path}:5: status must be" in first.output
    assert again.exit_code == 2
    assert db.execute("SELECT count(*) FROM log_records").fetchone() == (2,)
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (1,)


def test_ingest_reads_stdin(db: psycopg.Connection, cli_env: None) -> None:
    result = CliRunner().invoke(main, ["ingest", "-"], input=LINES[0] + b"\n")

    assert result.exit_code == 0, result.output
    assert "accepted 1, rejected 0" in result.output
    assert db.execute("SELECT count(*) FROM log_records").fetchone() == (1,)


def test_ingest_of_a_missing_file_is_a_clear_error(cli_env: None) -> None:
    result = CliRunner().invoke(main, ["ingest", "/nonexistent/file.jsonl"])

    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "/nonexistent/file.jsonl" in result.output

"""OTLP/HTTP as the specification says: encodings, compression, status codes, partial success."""

from __future__ import annotations

import gzip

import httpx
import orjson
import psycopg
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from q2c.settings import Settings
from tests.support.otlp import BASE_NS, NS, logs_request, stage_span, traces_request
from tests.support.services import running_collector

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}

# Every AnyValue type, 64-bit integers as string and as number, enums as integers, an
# unknown field, and hex trace/span IDs, as OTLP JSON has them.
EVERY_VALUE_TYPE = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "crm"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "hand-built"},
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "parentSpanId": "eee19b7ec3c1b173",
                            "name": "close won",
                            "kind": 2,
                            "startTimeUnixNano": str(BASE_NS),
                            "endTimeUnixNano": BASE_NS + NS,
                            "someFutureField": {"ignored": True},
                            "attributes": [
                                {"key": "q2c.correlation_id", "value": {"stringValue": "OPP-1"}},
                                {
                                    "key": "q2c.process",
                                    "value": {"stringValue": "order_to_activation"},
                                },
                                {
                                    "key": "q2c.stage",
                                    "value": {"stringValue": "opportunity_closed_won"},
                                },
                                {"key": "q2c.amount", "value": {"doubleValue": 1999.5}},
                                {"key": "seats", "value": {"intValue": "42"}},
                                {"key": "big", "value": {"intValue": 9007199254740993}},
                                {"key": "renewal", "value": {"boolValue": True}},
                                {
                                    "key": "tags",
                                    "value": {
                                        "arrayValue": {
                                            "values": [{"stringValue": "emea"}, {"intValue": "7"}]
                                        }
                                    },
                                },
                                {
                                    "key": "deal",
                                    "value": {
                                        "kvlistValue": {
                                            "values": [
                                                {"key": "stage", "value": {"stringValue": "won"}}
                                            ]
                                        }
                                    },
                                },
                                {"key": "blob", "value": {"bytesValue": "AAEC"}},
                                {"key": "nothing", "value": {}},
                            ],
                            "status": {"code": 1},
                        }
                    ],
                }
            ],
        }
    ]
}


def _status(response: httpx.Response) -> status_pb2.Status:
    if response.headers["content-type"].startswith("application/json"):
        body = orjson.loads(response.content)
        return status_pb2.Status(code=body.get("code", 0), message=body.get("message", ""))
    return status_pb2.Status.FromString(response.content)


def test_json_with_every_value_type_is_stored_faithfully(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    response = http.post("/v1/traces", content=orjson.dumps(EVERY_VALUE_TYPE), headers=JSON)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert orjson.loads(response.content) == {}
    row = db.execute(
        "SELECT trace_id, span_id, parent_span_id, kind, status_code, attributes, "
        "end_time - start_time FROM spans"
    ).fetchone()
    assert row[0].hex() == "5b8efff798038103d269b633813fc60c"
    assert (row[1].hex(), row[2].hex(), row[3], row[4]) == (
        "eee19b7ec3c1b174",
        "eee19b7ec3c1b173",
        2,
        1,
    )
    assert row[5] == {
        "q2c.correlation_id": "OPP-1",
        "q2c.process": "order_to_activation",
        "q2c.stage": "opportunity_closed_won",
        "q2c.amount": 1999.5,
        "seats": 42,
        "big": 9007199254740993,
        "renewal": True,
        "tags": ["emea", 7],
        "deal": {"stage": "won"},
        "blob": "AAEC",
        "nothing": None,
    }
    assert row[6].total_seconds() == 1
    assert db.execute("SELECT process, current_stage, amount FROM transactions").fetchone() == (
        "order_to_activation",
        "opportunity_closed_won",
        1999.5,
    )


def test_gzip_protobuf_is_accepted_and_answered_in_protobuf(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    body = traces_request(
        stage_span("INV-1", "invoice_posting", "invoice_posted", "billing", at_s=1, seq=10)
    )
    response = http.post(
        "/v1/traces",
        content=gzip.compress(body.SerializeToString()),
        headers={**PROTOBUF, "Content-Encoding": "gzip"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    assert ExportTraceServiceResponse.FromString(response.content) == ExportTraceServiceResponse()
    assert db.execute("SELECT count(*) FROM spans").fetchone() == (1,)


@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs"])
@pytest.mark.parametrize("headers", [PROTOBUF, JSON])
def test_an_empty_request_succeeds(http: httpx.Client, path: str, headers: dict) -> None:
    response = http.post(path, content=b"", headers=headers)

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b"\xff\xff\xff not protobuf", PROTOBUF, "not a valid ExportTraceServiceRequest"),
        (b'{"resourceSpans": [', JSON, "not valid JSON"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}',
            JSON,
            "not hex-encoded",
        ),
        (b'{"resourceSpans": "nope"}', JSON, "does not match"),
    ],
)
def test_undecodable_bodies_get_400_with_a_reason(
    http: httpx.Client, db: psycopg.Connection, body: bytes, headers: dict, reason: str
) -> None:
    response = http.post("/v1/traces", content=body, headers=headers)

    assert response.status_code == 400
    status = _status(response)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert reason in status.message
    assert db.execute("SELECT count(*) FROM spans").fetchone() == (0,)


def test_corrupt_gzip_gets_400(http: httpx.Client) -> None:
    response = http.post(
        "/v1/traces", content=b"\x1f\x8b not gzip", headers={**PROTOBUF, "Content-Encoding": "gzip"}
    )

    assert response.status_code == 400
    assert "gzip" in _status(response).message


def test_unsupported_content_type_gets_415(http: httpx.Client) -> None:
    response = http.post("/v1/traces", content=b"x", headers={"Content-Type": "text/plain"})

    assert response.status_code == 415


def test_bad_records_are_rejected_one_by_one_and_the_rest_stored(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    good = stage_span("INV-2", "invoice_posting", "invoice_posted", "billing", at_s=1, seq=20)
    no_trace = stage_span("INV-2", "invoice_posting", "invoice_posted", "billing", at_s=1, seq=30)
    no_trace.trace_id = b""
    backwards = stage_span("INV-2", "invoice_posting", "invoice_posted", "billing", at_s=1, seq=40)
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1
    future = stage_span("INV-2", "invoice_posting", "invoice_posted", "billing", at_s=1e6, seq=50)
    ancient = stage_span("INV-2", "invoice_posting", "invoice_posted", "billing", at_s=-1e8, seq=60)

    request = traces_request(good, no_trace, backwards, future, ancient)
    response = http.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)

    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 4
    for reason in (
        "invalid trace_id",
        "ends before it starts",
        "too far in the future",
        "older than",
    ):
        assert reason in partial.error_message
    assert db.execute("SELECT span_id FROM spans").fetchall() == [(good.span_id,)]


def test_values_outside_the_otlp_enums_are_rejected_per_record(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    good = stage_span("INV-4", "invoice_posting", "invoice_posted", "billing", at_s=1, seq=70)
    odd_kind = stage_span("INV-4", "invoice_posting", "invoice_posted", "billing", at_s=1, seq=80)
    odd_kind.kind = 2**31 - 1
    odd_status = stage_span("INV-4", "invoice_posting", "invoice_posted", "billing", at_s=1, seq=90)
    odd_status.status.code = 7
    spans = traces_request(good, odd_kind, odd_status).SerializeToString()
    records = logs_request(
        LogRecord(time_unix_nano=BASE_NS, severity_number=9),
        LogRecord(time_unix_nano=BASE_NS, severity_number=99),
    ).SerializeToString()

    traced = http.post("/v1/traces", content=spans, headers=PROTOBUF)
    logged = http.post("/v1/logs", content=records, headers=PROTOBUF)

    assert (traced.status_code, logged.status_code) == (200, 200)
    span_partial = ExportTraceServiceResponse.FromString(traced.content).partial_success
    assert span_partial.rejected_spans == 2
    assert "unknown span kind 2147483647" in span_partial.error_message
    assert "unknown status code 7" in span_partial.error_message
    log_partial = ExportLogsServiceResponse.FromString(logged.content).partial_success
    assert log_partial.rejected_log_records == 1
    assert "unknown severity number 99" in log_partial.error_message
    assert db.execute("SELECT span_id FROM spans").fetchall() == [(good.span_id,)]
    assert db.execute("SELECT severity_number FROM log_records").fetchall() == [(9,)]


def test_partial_success_for_logs_is_reported_in_json(http: httpx.Client) -> None:
    body = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"timeUnixNano": str(BASE_NS), "body": {"stringValue": "ok"}},
                            {"body": {"stringValue": "no time at all"}},
                        ]
                    }
                ]
            }
        ]
    }

    response = http.post("/v1/logs", content=orjson.dumps(body), headers=JSON)

    assert response.status_code == 200
    assert orjson.loads(response.content) == {
        "partialSuccess": {
            "rejectedLogRecords": "1",
            "errorMessage": "1 record(s) rejected: log record has neither time nor observed time",
        }
    }
    assert ExportLogsServiceResponse  # the protobuf shape carries the same fields


def test_bodies_over_the_limit_get_413(db_url: str, db: psycopg.Connection) -> None:
    settings = Settings(database_url=None, max_body_bytes=16384)
    big = traces_request(
        *(
            stage_span(
                "INV-3", "invoice_posting", "invoice_posted", "billing", at_s=1, seq=100 + 2 * i
            )
            for i in range(100)
        )
    ).SerializeToString()
    assert len(big) > 16384
    with running_collector(settings, db_url) as url, httpx.Client(base_url=url) as client:
        plain = client.post("/v1/traces", content=big, headers=PROTOBUF)
        bomb = client.post(
            "/v1/traces",
            content=gzip.compress(b"\x00" * 10_000_000),
            headers={**PROTOBUF, "Content-Encoding": "gzip"},
        )

    assert plain.status_code == 413
    assert bomb.status_code == 413
    assert "decompressed body exceeds 16384 bytes" in _status(bomb).message
    assert db.execute("SELECT count(*) FROM spans").fetchone() == (0,)


def test_bearer_token_is_required_when_tokens_are_configured(db_url: str) -> None:
    settings = Settings(database_url=None, ingest_tokens="alpha-token, beta-token")
    body = traces_request(
        stage_span("INV-4", "invoice_posting", "invoice_posted", "billing", at_s=1, seq=200)
    )
    with running_collector(settings, db_url) as url, httpx.Client(base_url=url) as client:
        missing = client.post("/v1/traces", content=body.SerializeToString(), headers=PROTOBUF)
        wrong = client.post(
            "/v1/traces",
            content=body.SerializeToString(),
            headers={**PROTOBUF, "Authorization": "Bearer alpha-tokenX"},
        )
        right = client.post(
            "/v1/traces",
            content=body.SerializeToString(),
            headers={**PROTOBUF, "Authorization": "Bearer beta-token"},
        )

    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert _status(missing).code == code_pb2.UNAUTHENTICATED

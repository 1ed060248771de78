"""One client's bad data is that client's problem: a record over a documented limit is
rejected with a reason naming its field while the rest of its request is stored, data the
database refuses fails only its own request (400, never 503), and other clients go on."""

from __future__ import annotations

import gzip
import random

import httpx
import psycopg
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collectors.observations import MAX_KEY_BYTES, MAX_KEY_CHARS
from collectors.otlp import MAX_GZIP_MEMBERS
from collectors.writer import CONFLICT, FAILED, REJECTED, UNAVAILABLE, classify
from tests.support.otlp import otlp_json, stage_span, traces_request

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
LONG = "x" * 3000


def _body(request, encoding: str) -> tuple[bytes, dict[str, str]]:
    if encoding == "protobuf":
        return request.SerializeToString(), PROTOBUF
    return otlp_json(request), JSON


def _spans(*overrides: dict[str, str], first_seq: int = 1) -> list:
    spans = []
    for i, override in enumerate(overrides):
        fields = {
            "process": "invoice_posting",
            "stage": "invoice_posted",
            "system": "billing",
            **override,
        }
        spans.append(
            stage_span(
                f"INV-{first_seq + i}",
                fields.pop("process"),
                fields.pop("stage"),
                fields.pop("system"),
                at_s=i,
                seq=(first_seq + i) * 10,
                **fields,
            )
        )
    return spans


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@pytest.mark.parametrize(
    ("field", "attribute", "override"),
    [
        ("stage", "q2c.stage", {"stage": LONG}),
        ("system", "q2c.system", {"system": LONG}),
        ("process", "q2c.process", {"process": LONG}),
        ("customer_id", "q2c.customer_id", {"customer_id": LONG}),
        ("invoice_id", "q2c.invoice_id", {"invoice_id": LONG}),
    ],
)
def test_a_span_with_an_overlong_name_or_key_is_rejected_and_the_rest_stored(
    http: httpx.Client, db: psycopg.Connection, encoding, field, attribute, override
) -> None:
    body, headers = _body(traces_request(*_spans({}, override, {})), encoding)

    response = http.post("/v1/traces", content=body, headers=headers)

    assert response.status_code == 200
    if encoding == "protobuf":
        partial = ExportTraceServiceResponse.FromString(response.content).partial_success
        rejected, message = partial.rejected_spans, partial.error_message
    else:
        partial = response.json()["partialSuccess"]
        rejected, message = int(partial["rejectedSpans"]), partial["errorMessage"]
    assert rejected == 1
    assert f"{field} ({attribute}) is 3000 characters (3000 bytes) long; the limit is" in message
    assert db.execute("SELECT correlation_id FROM spans ORDER BY 1").fetchall() == [
        ("INV-1",),
        ("INV-3",),
    ]
    assert db.execute("SELECT count(*) FROM stage_events").fetchone() == (2,)


@pytest.mark.parametrize("amount", ["lots", 1e300, "NaN"])
def test_an_amount_the_books_cannot_hold_is_stored_aside_and_the_client_told(
    http: httpx.Client, db: psycopg.Connection, amount
) -> None:
    body = traces_request(*_spans({"amount": amount, "invoice_id": "INV-X"})).SerializeToString()

    response = http.post("/v1/traces", content=body, headers=PROTOBUF)

    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 0  # a warning: the span is stored
    assert partial.error_message.startswith("stored with warnings: amount ")
    assert "is not an amount the books hold" in partial.error_message
    assert db.execute("SELECT invoice_id, amount FROM transactions").fetchall() == [("INV-X", None)]


def test_names_and_keys_at_the_limit_are_stored(http: httpx.Client, db: psycopg.Connection) -> None:
    at_limit = "é" * MAX_KEY_CHARS  # 510 bytes: the compiled reader leaves it to Python
    body, headers = _body(
        traces_request(*_spans({"stage": at_limit, "customer_id": at_limit})), "protobuf"
    )

    response = http.post("/v1/traces", content=body, headers=headers)

    assert response.status_code == 200 and response.content == b""
    assert db.execute("SELECT stage, business->>'customer_id' FROM stage_events").fetchone() == (
        at_limit,
        at_limit,
    )


def test_an_integration_log_over_a_limit_is_rejected_by_line(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    lines = [
        {
            "correlation_id": "INV-1",
            "timestamp": "2026-11-30T10:00:00Z",
            "process": "invoice_posting",
            "stage": "invoice_posted",
            "system": "billing",
        },
        {
            "correlation_id": "INV-2",
            "timestamp": "2026-11-30T10:00:00Z",
            "process": "invoice_posting",
            "stage": "invoice_posted",
            "system": "billing",
            "invoice_id": LONG,
        },
    ]
    body = b"\n".join(httpx.Request("POST", "/", json=line).content for line in lines)

    response = http.post("/v1/integration-logs", content=body)

    assert response.status_code == 200
    assert response.json()["errors"] == [
        {
            "line": 2,
            "reason": "invoice_id (q2c.invoice_id) is 3000 characters (3000 bytes) long; "
            "the limit is 255 characters and 640 bytes",
        }
    ]
    assert db.execute("SELECT correlation_id FROM log_records").fetchall() == [("INV-1",)]


def test_keys_in_multibyte_characters_are_limited_in_bytes_too(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    # Within 255 characters, but three keys of four-byte characters would make one
    # stage_events key past the btree limit (2,704 bytes).
    wide = "".join(chr(0x20000 + n * 37) for n in range(MAX_KEY_CHARS))
    body, headers = _body(traces_request(*_spans({}, {"stage": wide, "system": wide})), "protobuf")

    response = http.post("/v1/traces", content=body, headers=headers)

    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert response.status_code == 200 and partial.rejected_spans == 1
    assert f"(1020 bytes) long; the limit is 255 characters and {MAX_KEY_BYTES} bytes" in (
        partial.error_message
    )
    assert db.execute("SELECT correlation_id FROM spans").fetchall() == [("INV-1",)]


@pytest.mark.parametrize(
    ("state", "status"), [("22003", 400), ("23514", 400), ("54000", 400), ("XX000", 503)]
)
def test_data_the_database_refuses_fails_its_own_request_and_no_other(
    http: httpx.Client, collector_url: str, owner_db: psycopg.Connection, state: str, status: int
) -> None:
    # The database refuses one transaction's rows with an error of class `state`.
    owner_db.execute(_REFUSE.replace("STATE", state))
    bad, headers = _body(traces_request(*_spans({}, first_seq=1)), "protobuf")  # INV-1
    good, _ = _body(traces_request(*_spans({}, first_seq=50)), "protobuf")

    refused = http.post("/v1/traces", content=bad, headers=headers)
    with httpx.Client(base_url=collector_url) as other:
        served = other.post("/v1/traces", content=good, headers=headers)

    assert refused.status_code == status
    assert ("retry-after" in refused.headers) == (status == 503)  # a defect: retry later
    assert served.status_code == 200
    assert owner_db.execute("SELECT correlation_id FROM spans").fetchall() == [("INV-50",)]


_REFUSE = """
CREATE FUNCTION refuse_inv_1() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.correlation_id = 'INV-1' THEN RAISE USING ERRCODE = 'STATE'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_inv_1 BEFORE INSERT ON stage_events
FOR EACH ROW EXECUTE FUNCTION refuse_inv_1();
"""


def _error(conn: psycopg.Connection, statement: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)
    conn.rollback()
    return caught.value


def test_postgres_errors_are_classified_by_sqlstate_class(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TEMP TABLE t (v text CHECK (v <> 'no'), k text)")
        conn.execute("CREATE INDEX ON t (k)")
        conn.commit()
        data = _error(conn, "SELECT 1 / 0")  # 22012
        integrity = _error(conn, "INSERT INTO t VALUES ('no', '')")  # 23514
        limit = _error(conn, f"INSERT INTO t VALUES ('', '{random.randbytes(6000).hex()}')")
        conflict = _error(conn, "SELECT q2c_retry_statement('again')")  # 40001
        defect = _error(conn, "SELECT no_such_column FROM t")  # 42703
        # Disk full, out of memory and I/O errors cannot be caused on demand: raised with
        # their SQLSTATE by the server itself.
        raised = {
            state: _error(
                conn, f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{state}'; END $$"
            )
            for state in ("53100", "53200", "58030")
        }
        conn.execute("SET statement_timeout = '1ms'")
        cancelled = _error(conn, "SELECT pg_sleep(1)")  # 57014
    with psycopg.connect(db_url, autocommit=True) as killer, psycopg.connect(db_url) as victim:
        pid = victim.info.backend_pid
        killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.Error) as terminated:  # 57P01, or the closed socket
            victim.execute("SELECT 1")
    with pytest.raises(psycopg.Error) as refused:
        psycopg.connect("postgresql://127.0.0.1:1/postgres", connect_timeout=2)

    assert [data.sqlstate, integrity.sqlstate, limit.sqlstate] == ["22012", "23514", "54000"]
    assert [classify(e) for e in (data, integrity, limit)] == [REJECTED] * 3
    assert (conflict.sqlstate, classify(conflict)) == ("40001", CONFLICT)
    assert (defect.sqlstate, classify(defect)) == ("42703", FAILED)
    assert (cancelled.sqlstate, classify(cancelled)) == ("57014", FAILED)
    assert classify(terminated.value) == UNAVAILABLE
    assert classify(refused.value) == UNAVAILABLE
    assert {state: classify(e) for state, e in raised.items()} == dict.fromkeys(raised, UNAVAILABLE)


def _log_line(correlation_id: str, **fields: object) -> bytes:
    record = {
        "correlation_id": correlation_id,
        "timestamp": "2026-11-30T10:00:00Z",
        "process": "invoice_posting",
        "stage": "invoice_recorded",
        "system": "erp",
        **fields,
    }
    return httpx.Request("POST", "/", json=record).content


def test_integration_log_records_that_cannot_be_stored_are_refused_by_line(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    deep = b"[" * 300 + b"]" * 300  # orjson reads it, but writes at most 254 levels
    deeper = b"[" * 1100 + b"]" * 1100  # past what orjson reads
    lines = [
        _log_line("INV-1"),
        _log_line("INV-2")[:-1] + b', "payload": ' + deep + b"}",
        _log_line("INV-3")[:-1] + b', "payload": ' + deeper + b"}",
        _log_line("INV-4", status="error", error_message="posting\u0000 failed"),
        _log_line("INV-5", status="error", replay_target={"url": "http://erp/"}),
        _log_line("INV-6", status="error", replay_target="http://erp/", dead_letter="false"),
        _log_line("INV-7", status="error", replay_target="http://erp/", replay_headers="x"),
    ]

    response = http.post("/v1/integration-logs", content=b"\n".join(lines))

    assert response.status_code == 200
    errors = {error["line"]: error["reason"] for error in response.json()["errors"]}
    assert errors[2] == "the record nests JSON deeper than 254 levels"
    assert errors[3].startswith("invalid JSON")
    assert errors[5] == "replay_target must be a string (a URL)"
    assert errors[6] == "dead_letter must be true or false"  # "false" is true to Python
    assert errors[7] == "replay_headers must be an object (header name → value)"
    assert sorted(errors) == [2, 3, 5, 6, 7]
    assert db.execute("SELECT correlation_id FROM log_records ORDER BY 1").fetchall() == [
        ("INV-1",),
        ("INV-4",),
    ]
    assert db.execute("SELECT message FROM exceptions").fetchall() == [("posting failed",)]


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    """One protobuf field: tag, then (length-delimited) the payload's length and payload."""
    if wire_type == 2:
        payload = bytes([len(payload)]) + payload
    return bytes([number << 3 | wire_type]) + payload


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_field(1, 0, b"\x05"), "field resource_spans (1) of ExportTraceServiceRequest"),
        (_field(1, 2, _field(2, 0, b"\x01")), "field scope_spans (2) of ResourceSpans"),
        (
            _field(1, 2, _field(2, 2, _field(2, 2, _field(5, 0, b"\x07")))),
            "field name (5) of Span has wire type 0",
        ),
    ],
)
def test_protobuf_fields_of_the_wrong_wire_type_are_refused(
    http: httpx.Client, db: psycopg.Connection, body: bytes, reason: str
) -> None:
    response = http.post("/v1/traces", content=body, headers=PROTOBUF)

    assert response.status_code == 400
    assert reason in status_pb2.Status.FromString(response.content).message
    assert db.execute("SELECT count(*) FROM spans").fetchone() == (0,)


@pytest.mark.parametrize(
    ("path", "field", "value", "named"),
    [
        ("/v1/traces", "kind", "SPAN_KIND_BOGUS", "SPAN_KIND_CLIENT"),
        ("/v1/traces", "status", {"code": "STATUS_CODE_EROR"}, {"code": "STATUS_CODE_ERROR"}),
        ("/v1/logs", "severityNumber", "SEVERITY_NUMBER_BAD", "SEVERITY_NUMBER_ERROR"),
    ],
)
def test_an_enum_name_that_names_nothing_is_refused_not_read_as_zero(
    http: httpx.Client, db: psycopg.Connection, path: str, field: str, value, named
) -> None:
    # Read as 0, a misspelled STATUS_CODE_ERROR would have stored a failure as a success.
    kind = "Spans" if path == "/v1/traces" else "Logs"
    records = "spans" if kind == "Spans" else "logRecords"

    def body(enum_value) -> dict:
        record = {"traceId": "1" * 32, "spanId": "2" * 16, "name": "post", field: enum_value}
        return {f"resource{kind}": [{f"scope{kind}": [{records: [record]}]}]}

    refused = http.post(path, json=body(value))
    accepted = http.post(path, json=body(named))

    assert refused.status_code == 400
    shown = value if isinstance(value, str) else value["code"]
    assert f"{'status.code' if field == 'status' else field} {shown!r}" in refused.json()["message"]
    assert accepted.status_code == 200, accepted.text


def test_fields_unknown_to_this_schema_are_still_accepted(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    body = traces_request(*_spans({})).SerializeToString() + _field(9, 0, b"\x01")

    response = http.post("/v1/traces", content=body, headers=PROTOBUF)

    assert response.status_code == 200
    assert db.execute("SELECT count(*) FROM spans").fetchone() == (1,)


def test_gzip_with_trailing_garbage_is_refused_and_several_members_are_read(
    http: httpx.Client, db: psycopg.Connection
) -> None:
    first, second = (traces_request(*_spans({}, first_seq=n)).SerializeToString() for n in (1, 2))
    gzipped = {**PROTOBUF, "Content-Encoding": "gzip"}

    damaged = http.post("/v1/traces", content=gzip.compress(first) + b"junk", headers=gzipped)
    members = http.post(
        "/v1/traces", content=gzip.compress(first) + gzip.compress(second), headers=gzipped
    )

    assert damaged.status_code == 400
    assert "4 bytes of trailing data after the gzip stream" in (
        status_pb2.Status.FromString(damaged.content).message
    )
    assert members.status_code == 200
    assert db.execute("SELECT correlation_id FROM spans ORDER BY 1").fetchall() == [
        ("INV-1",),
        ("INV-2",),
    ]


def test_a_gzip_body_of_many_members_is_refused(http: httpx.Client) -> None:
    members = gzip.compress(b"") * (MAX_GZIP_MEMBERS + 1)

    response = http.post(
        "/v1/traces", content=members, headers={**PROTOBUF, "Content-Encoding": "gzip"}
    )

    assert response.status_code == 400
    assert (
        f"more than {MAX_GZIP_MEMBERS} members"
        in status_pb2.Status.FromString(response.content).message
    )


def test_a_refused_record_gets_no_warning_about_what_it_kept(http: httpx.Client) -> None:
    body = traces_request(*_spans({"amount": "lots", "legal_entity": LONG})).SerializeToString()

    response = http.post("/v1/traces", content=body, headers=PROTOBUF)

    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 1 and "legal_entity" in partial.error_message
    assert "warnings" not in partial.error_message  # it kept nothing

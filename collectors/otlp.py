"""OTLP/HTTP wire format: request bodies in, responses and error statuses out.

Protobuf and JSON as the OTLP specification gives them: JSON carries trace and span IDs as
hex (not protobuf-JSON's base64), enums as integers, lowerCamelCase keys (original names are
accepted too) and 64-bit integers as strings or numbers; unknown fields are ignored.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_GZIP_MAGIC = b"\x1f\x8b"
MAX_GZIP_MEMBERS = 64

TRACES_REQUEST = trace_service_pb2.ExportTraceServiceRequest
LOGS_REQUEST = logs_service_pb2.ExportLogsServiceRequest


class BadRequest(Exception):
    """The body cannot be decoded; the message says why (sent back as google.rpc.Status)."""


class TooLarge(Exception):
    """The body exceeds the size limit, before or after decompression."""


def media_type(content_type: str | None) -> str | None:
    """PROTOBUF or JSON for a Content-Type header, None when it is neither."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return base if base in (PROTOBUF, JSON) else None


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body after Content-Encoding; a gzip bomb stops at `limit` bytes of output."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise BadRequest(f"unsupported Content-Encoding '{encoding}' (use gzip or none)")
    # A gzip body may hold several members (RFC 1952), each after the last; anything else
    # after the first member is damage, not data to ignore. Exporters send one; each member
    # copies the rest of the body, so their number is bounded.
    data, rest = b"", body
    for _ in range(MAX_GZIP_MEMBERS):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data += inflater.decompress(rest, limit + 1 - len(data))
        except zlib.error as exc:
            raise BadRequest(f"gzip body is corrupt: {exc}") from None
        if len(data) > limit:
            raise TooLarge(f"decompressed body exceeds {limit} bytes")
        if not inflater.eof:
            raise BadRequest("gzip body is truncated")
        rest = inflater.unused_data
        if not rest:
            return data
        if not rest.startswith(_GZIP_MAGIC):
            raise BadRequest(f"{len(rest)} bytes of trailing data after the gzip stream")
    raise BadRequest(f"gzip body has more than {MAX_GZIP_MEMBERS} members")


def parse(body: bytes, kind: str, message_type: type[Message]) -> Any:
    """Decode an export request of `message_type` from protobuf or OTLP JSON."""
    message = message_type()
    if kind == PROTOBUF:
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise BadRequest(f"body is not a valid {message_type.__name__}: {exc}") from None
        _refuse_mistyped_fields(body, message)
        return message
    if not body.strip():
        return message
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("JSON body must be an object")
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadRequest(f"JSON body does not match {message_type.__name__}: {exc}") from None
    return message


def _refuse_mistyped_fields(body: bytes, message: Message) -> None:
    """BadRequest if a known field of `message` (parsed from `body`) came with the wrong
    wire type.

    The protobuf runtime keeps such a field as an unknown one and parses the rest, so a
    body of nothing but mistyped fields would read as an empty request. Fields unknown to
    this schema (from a newer OTLP) stay allowed. Most bodies hold no unknown fields at
    all, which dropping them and comparing sizes tells without walking the message.
    """
    size = message.ByteSize()
    message.DiscardUnknownFields()
    if message.ByteSize() == size:
        return
    if problem := _mistyped(type(message).FromString(body)):
        raise BadRequest(problem)


def _mistyped(message: Message) -> str | None:
    """The first known field that `message` or a message inside it holds as unknown."""
    known = message.DESCRIPTOR.fields_by_number
    for unknown in UnknownFieldSet(message):
        if (field := known.get(unknown.field_number)) is not None:
            return (
                f"field {field.name} ({unknown.field_number}) of {message.DESCRIPTOR.name} has "
                f"wire type {unknown.wire_type}, which its type does not allow"
            )
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        for item in (value,) if isinstance(value, Message) else value:
            if problem := _mistyped(item):
                return problem
    return None


_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
_CONTAINERS = {
    "resourceSpans",
    "resource_spans",
    "scopeSpans",
    "scope_spans",
    "spans",
    "links",
    "resourceLogs",
    "resource_logs",
    "scopeLogs",
    "scope_logs",
    "logRecords",
    "log_records",
}


# Enum fields of spans and log records, by their JSON names, and the names they may take.
# An unknown name is refused: protobuf's lenient parser (needed for fields a newer OTLP
# adds) would read it as 0, and a misspelled error status would lose the failure.
_ENUM_NAMES = {
    "kind": tuple(trace_pb2.Span.SpanKind.keys()),
    "severityNumber": tuple(logs_pb2.SeverityNumber.keys()),
    "severity_number": tuple(logs_pb2.SeverityNumber.keys()),
}
_STATUS_CODES = tuple(trace_pb2.Status.StatusCode.keys())


def _known_name(key: str, value: object, names: tuple[str, ...]) -> None:
    """BadRequest if `value` is neither a number nor one of `names`."""
    if isinstance(value, str) and value not in names and not value.lstrip("-").isdigit():
        listed = ", ".join(names) if len(names) < 8 else f"{names[0]} … {names[-1]}"
        raise BadRequest(f"{key} {value[:40]!r} is neither a number nor one of {listed}")


def _hex_ids_to_base64(node: dict[str, Any]) -> None:
    """OTLP JSON IDs are hex; protobuf's JSON parser expects base64. Rewrite them in place,
    and refuse an enum value that names nothing (`_ENUM_NAMES`)."""
    for key, value in node.items():
        if key in _ID_KEYS and isinstance(value, str):
            try:
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                raise BadRequest(f"{key} '{value[:40]}' is not hex-encoded") from None
        elif key in _ENUM_NAMES:
            _known_name(key, value, _ENUM_NAMES[key])
        elif key == "status" and isinstance(value, dict):
            _known_name("status.code", value.get("code"), _STATUS_CODES)
        elif key in _CONTAINERS and isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _hex_ids_to_base64(item)


def encode(message: Message, kind: str) -> bytes:
    """A response message in the request's encoding."""
    if kind == JSON:
        return orjson.dumps(json_format.MessageToDict(message))
    return message.SerializeToString()


def status(code: int, text: str, kind: str) -> bytes:
    """A google.rpc.Status body, the OTLP error response, in the request's encoding."""
    return encode(status_pb2.Status(code=code, message=text), kind)


def traces_response(rejected: int, error_message: str) -> Message:
    """ExportTraceServiceResponse, with partial success when records were rejected or
    stored with warnings."""
    response = trace_service_pb2.ExportTraceServiceResponse()
    if rejected or error_message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = error_message
    return response


def logs_response(rejected: int, error_message: str) -> Message:
    """ExportLogsServiceResponse, with partial success when records were rejected or
    stored with warnings."""
    response = logs_service_pb2.ExportLogsServiceResponse()
    if rejected or error_message:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = error_message
    return response

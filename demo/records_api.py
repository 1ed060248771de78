"""The sandbox systems' list endpoints: their records page by page, as SaaS APIs serve
them, for reconciliation to read.

ERP and billing answer `{"data": [...], "links": {"next": URL | null}}`, the CRM as
Salesforce's query API does, `{"totalSize", "done", "records", "nextRecordsUrl"}` (with an
absolute URL here). Each takes `?limit=` (1 … MAX_LIMIT, default DEFAULT_LIMIT) and the
opaque `?cursor=` of the previous page's next link. ERP wants `Authorization: Bearer
<token>` (Q2C_ERP_TOKEN in the sandbox's environment, default DEFAULT_ERP_TOKEN) and answers
401 without it; billing and CRM, on loopback only, ask for none.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from demo.records import Record, SystemsOfRecord

ERP_TOKEN_ENV = "Q2C_ERP_TOKEN"
DEFAULT_ERP_TOKEN = "sandbox-erp-reader-4b7d19"
DEFAULT_LIMIT = 100  # records per page
MAX_LIMIT = 1000


def _saas_page(records: list[Record], next_url: str | None, total: int) -> dict[str, Any]:
    return {"data": records, "links": {"next": next_url}}


def _salesforce_page(records: list[Record], next_url: str | None, total: int) -> dict[str, Any]:
    return {
        "totalSize": total,
        "done": next_url is None,
        "records": records,
        "nextRecordsUrl": next_url,
    }


Envelope = Callable[[list[Record], str | None, int], dict[str, Any]]
# path → (collection, envelope, whether it wants the ERP token)
LISTS: dict[str, tuple[str, Envelope, bool]] = {
    "/erp/invoices": ("erp.invoices", _saas_page, True),
    "/erp/payments": ("erp.payments", _saas_page, True),
    "/billing/customers": ("billing.customers", _saas_page, False),
    "/billing/payments": ("billing.payments", _saas_page, False),
    "/billing/subscriptions": ("billing.subscriptions", _saas_page, False),
    "/crm/accounts": ("crm.accounts", _salesforce_page, False),
    "/crm/opportunities": ("crm.opportunities", _salesforce_page, False),
}


def _cursor(number: int) -> str:
    return base64.urlsafe_b64encode(f"n:{number}".encode()).decode().rstrip("=")


def _after(cursor: str) -> int:
    """The record number a cursor continues after; ValueError if it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(cursor) from exc
    if not text.startswith("n:"):
        raise ValueError(cursor)
    return int(text[2:])


def _limit(text: str | None) -> int:
    limit = DEFAULT_LIMIT if text is None else int(text)
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(text)
    return limit


def record_routes(records: SystemsOfRecord, erp_token: str = DEFAULT_ERP_TOKEN) -> list[Route]:
    """GET routes of every list in LISTS, to sit before the targets' catch-all routes."""
    expected = f"Bearer {erp_token}".encode()

    def endpoint(collection: str, envelope: Envelope, wants_token: bool):
        async def listing(request: Request) -> JSONResponse:
            given = request.headers.get("authorization", "").encode()
            if wants_token and not hmac.compare_digest(given, expected):
                return JSONResponse(
                    {"error": "invalid_token", "message": "a valid Bearer token is required"},
                    401,
                    headers={"WWW-Authenticate": 'Bearer realm="erp"'},
                )
            try:
                limit = _limit(request.query_params.get("limit"))
                cursor = request.query_params.get("cursor")
                after = 0 if cursor is None else _after(cursor)
            except ValueError:
                return JSONResponse(
                    {
                        "error": "invalid_request",
                        "message": f"limit must be 1 to {MAX_LIMIT}; cursor as a next link has it",
                    },
                    400,
                )
            page = records.page(collection, after, limit)
            next_url = None
            if page.after is not None:
                cursor = _cursor(page.after)
                next_url = str(request.url.include_query_params(limit=limit, cursor=cursor))
            return JSONResponse(envelope(page.records, next_url, page.total))

        return listing

    return [
        Route(path, endpoint(*spec), methods=["GET"], name=spec[0]) for path, spec in LISTS.items()
    ]

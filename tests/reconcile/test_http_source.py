"""The http source against a paginated JSON API on loopback shaped like an ERP's list
endpoint: pages of `data` with `links.next`, a bearer token, 429 with Retry-After, 5xx,
broken pages. Time is pretended: the source's waits and its rate limiter's schedule are
read from the clock it was given, never measured."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from q2c.masking import MASK
from reconcile.sources import LoadResult, SourceError, StagingTable
from reconcile.sources.http import Clock, HttpSource
from tests.support.peers import tcp_peer
from tests.support.services import running_app

TOKEN = "erp-t0ken-9f8e7d6c5b4a"
ENVIRON = {"Q2C_ERP_TOKEN": TOKEN}
FIELDS = {
    "invoice_id": "externalId",
    "customer_id": "customer.ref",
    "amount": "amount",
    "currency": "currencyCode",
    "updated_at": "lastModified",
}


@dataclass
class PretendClock:
    """A clock that moves only when the source sleeps on it."""

    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    @property
    def clock(self) -> Clock:
        return Clock(lambda: self.now, self.sleep)


@dataclass
class Erp:
    """What the API was asked (page, headers, the pretended time) and what it answers:
    `pages` by number (JSON text, or a Response), `scripted` answers given first."""

    time: PretendClock
    url: str = ""
    pages: dict[int, str | Response] = field(default_factory=dict)
    scripted: dict[int, list[Response]] = field(default_factory=dict)
    requests: list[tuple[int, dict[str, str], float]] = field(default_factory=list)

    def asked(self) -> list[int]:
        return [number for number, _, _ in self.requests]


def invoice_page(first: int, count: int, next_link: str | None) -> str:
    """A page of `count` invoices from INV-`first`, amounts written with trailing zeros."""
    records = [
        f'{{"externalId": "INV-{n}", "customer": {{"ref": "C-{n % 3}"}}, '
        f'"amount": {n}00.50, "currencyCode": "EUR", "lastModified": "2026-12-01T10:00:00Z"}}'
        for n in range(first, first + count)
    ]
    return f'{{"data": [{", ".join(records)}], "links": {{"next": {json.dumps(next_link)}}}}}'


@pytest.fixture
def erp() -> Iterator[Erp]:
    api = Erp(PretendClock())

    async def invoices(request: Request) -> Response:
        number = int(request.query_params.get("page", "1"))
        api.requests.append((number, dict(request.headers), api.time.now))
        if api.scripted.get(number):
            return api.scripted[number].pop(0)
        page = api.pages[number]
        return page if isinstance(page, Response) else Response(page, 200, None, "application/json")

    async def moved(request: Request) -> Response:
        return RedirectResponse("/erp/invoices", 301)

    app = Starlette(routes=[Route("/erp/invoices", invoices), Route("/erp/old-invoices", moved)])
    with running_app(app) as base:
        api.url = base + "/erp/invoices"
        yield api


def source(erp: Erp, **changes: Any) -> HttpSource:
    """The issue's erp source, at the test's API."""
    document = {
        "type": "http",
        "url": erp.url,
        "headers": {"Authorization": "Bearer ${Q2C_ERP_TOKEN}"},
        "items": "data",
        "next": "links.next",
        "fields": FIELDS,
        **changes,
    }
    return HttpSource.model_validate(document)


def three_pages(erp: Erp) -> None:
    """5, 5 and 2 invoices; page 1 links on relatively, page 2 absolutely, page 3 ends."""
    erp.pages = {
        1: invoice_page(1, 5, "?page=2"),
        2: invoice_page(6, 5, erp.url + "?page=3"),
        3: invoice_page(11, 2, None),
    }


def load(erp: Erp, staging: StagingTable, **changes: Any) -> LoadResult:
    return source(erp, **changes).load(staging, ENVIRON, erp.time.clock)


def failure(erp: Erp, staging: StagingTable, **changes: Any) -> SourceError:
    with pytest.raises(SourceError) as raised:
        load(erp, staging, **changes)
    assert TOKEN not in str(raised.value)
    return raised.value


def test_every_page_along_the_next_links_reaches_the_staging_table(
    erp: Erp, staging: StagingTable, staged: Callable[[], list[dict[str, Any]]]
) -> None:
    three_pages(erp)

    result = load(erp, staging)

    assert result == LoadResult(12, tuple(FIELDS))
    assert erp.asked() == [1, 2, 3]
    rows = staged()
    assert [row["invoice_id"] for row in rows] == [f"INV-{n}" for n in range(1, 13)]
    assert rows[6] == {
        "invoice_id": "INV-7",
        "customer_id": "C-1",
        "amount": "700.50",  # as the API wrote it: a decimal, not a float's 700.5
        "tax_amount": None,  # a field the source does not give
        "currency": "EUR",
        "status": None,
        "updated_at": "2026-12-01T10:00:00Z",
        "_at": "page 2 record 2",
    }


def test_the_authorization_header_carries_the_secret_from_the_environment(
    erp: Erp, staging: StagingTable
) -> None:
    three_pages(erp)

    load(erp, staging)

    assert {headers["authorization"] for _, headers, _ in erp.requests} == {f"Bearer {TOKEN}"}


def test_a_variable_not_set_fails_naming_it_before_any_request(
    erp: Erp, staging: StagingTable
) -> None:
    three_pages(erp)

    with pytest.raises(SourceError, match=r"\$\{Q2C_ERP_TOKEN\} is not set"):
        source(erp).load(staging, {}, erp.time.clock)

    assert erp.requests == []


def test_a_429_is_retried_after_the_seconds_it_asks_for(erp: Erp, staging: StagingTable) -> None:
    three_pages(erp)
    erp.scripted[2] = [PlainTextResponse("slow down", 429, {"Retry-After": "7"})]

    result = load(erp, staging)

    assert result.rows == 12
    assert erp.asked() == [1, 2, 2, 3]
    page_2_times = [at for number, _, at in erp.requests if number == 2]
    assert page_2_times[1] - page_2_times[0] == 7.0


def test_a_page_failing_with_500_forever_fails_after_the_retries_naming_it(
    erp: Erp, staging: StagingTable
) -> None:
    three_pages(erp)
    # The server echoes the request, secret included: the error must not repeat it.
    erp.scripted[2] = [PlainTextResponse(f"boom: Bearer {TOKEN}", 500) for _ in range(4)]

    error = failure(erp, staging, retries=3)

    assert erp.asked() == [1, 2, 2, 2, 2]
    assert erp.time.slept[-3:] == [1.0, 2.0, 4.0]  # the doubling backoff, no Retry-After
    assert error.reason == f"answered 500: boom: Bearer {MASK}; gave up after 4 attempts"
    assert error.at == f"page 2, {erp.url}?page=2"


def test_credentials_in_the_sources_url_are_masked_in_what_a_failure_says(
    erp: Erp, staging: StagingTable
) -> None:
    three_pages(erp)
    erp.scripted[1] = [PlainTextResponse("down", 500) for _ in range(2)]
    with_credentials = erp.url.replace("://", "://erp-bot:URL-SECRET-1@") + "?api_key=URL-SECRET-2"

    error = failure(erp, staging, url=with_credentials, retries=1)

    assert "URL-SECRET" not in error.reason + error.at, (error.reason, error.at)
    assert error.at.startswith("page 1, http://erp-bot:•••@")


def test_a_retry_after_longer_than_a_source_waits_fails_at_once(
    erp: Erp, staging: StagingTable
) -> None:
    three_pages(erp)
    erp.scripted[1] = [PlainTextResponse("", 503, {"Retry-After": "3600"})]

    error = failure(erp, staging)

    assert erp.asked() == [1]
    assert "asking to retry in 3600 s, longer than the 60 s a source waits" in error.reason


def test_requests_are_paced_by_the_rate_limit(erp: Erp, staging: StagingTable) -> None:
    three_pages(erp)

    load(erp, staging, rate=2)

    assert [at for _, _, at in erp.requests] == [0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        ("<html>maintenance</html>", "the page is not JSON: <html>maintenance</html>"),
        ('{"items": []}', "the page has no `data`"),
        ('{"data": {"externalId": "INV-6"}}', "`data` is not a list of records"),
        ('{"data": [{"externalId": "INV-6"}, "INV-7"]}', "record 2 is not an object"),
        ('{"data": [{"externalId": "INV\\u00006"}]}', "record 1: a value holds a NUL"),
    ],
)
def test_a_bad_page_fails_with_its_number_and_url(
    erp: Erp,
    staging: StagingTable,
    staged: Callable[[], list[dict[str, Any]]],
    page: str,
    reason: str,
) -> None:
    three_pages(erp)
    erp.pages[2] = page

    error = failure(erp, staging)

    assert error.reason.startswith(reason)
    assert error.at == f"page 2, {erp.url}?page=2"
    assert len(staged()) == 5  # page 1, copied before page 2 was asked for


def test_a_next_link_back_to_an_earlier_page_fails_rather_than_loop(
    erp: Erp, staging: StagingTable
) -> None:
    erp.pages = {1: invoice_page(1, 2, "?page=2"), 2: invoice_page(3, 2, "/erp/invoices")}

    error = failure(erp, staging)

    assert error.reason == f"the next link leads back to an earlier page: {erp.url}"


def test_a_redirect_is_not_followed(erp: Erp, staging: StagingTable) -> None:
    error = failure(erp, staging, url=erp.url.replace("/invoices", "/old-invoices"))

    assert error.reason.startswith("answered 301")
    assert "configure the final URL" in error.reason
    assert erp.requests == []


def test_a_server_that_never_answers_times_out(staging: StagingTable) -> None:
    with tcp_peer("silent") as port:
        config = {"url": f"http://127.0.0.1:{port}/erp", "timeout": "0.2s", "retries": 0}
        silent = HttpSource.model_validate(
            {"type": "http", "items": "data", "fields": FIELDS, **config}
        )
        with pytest.raises(SourceError) as raised:
            silent.load(staging, ENVIRON, PretendClock().clock)

    assert raised.value.reason == "no answer within 0.2 s; gave up after 1 attempt"


def test_probe_describes_the_first_page(erp: Erp) -> None:
    three_pages(erp)

    said = source(erp).probe(ENVIRON, erp.time.clock)

    assert said == f"GET {erp.url} → 200, 5 records on the first page"
    assert erp.asked() == [1]


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"url": "ftp://erp.example.com/x"}, "url"),
        ({"items": ""}, "items"),
        ({"next": "links..next"}, "next"),
        ({"rate": 0}, "rate"),
        ({"retries": -1}, "retries"),
        ({"timeout": "soon"}, "timeout"),
        ({"pages": 3}, "pages"),
    ],
)
def test_a_bad_record_names_its_key(changes: dict[str, Any], key: str) -> None:
    document = {"type": "http", "url": "http://127.0.0.1:1/x", "items": "data", "fields": FIELDS}

    with pytest.raises(ValidationError) as raised:
        HttpSource.model_validate({**document, **changes})

    assert [error["loc"][0] for error in raised.value.errors()] == [key]

"""The `http` source: records from a JSON API, page after page along the `next` link, each
page copied into the staging table before the next is asked for.

Requests go as alerts' and replays' do: no redirects (a redirect could carry the header
secrets elsewhere; configure the final URL), no proxies or .netrc from the environment, at
most `rate` requests per second (replay's limiter), 408, 429 and 5xx retried after the
Retry-After the server asks for, or a doubling backoff, each wait bounded.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from q2c.config_types import HttpUrl
from q2c.durations import Duration
from q2c.masking import MASK, configured
from reconcile.sources import LoadResult, SourceError, StagingTable
from reconcile.sources._rows import as_text, copy_statement
from replay.dispatcher import HostRateLimiter
from replay.transport import failure_of, retry_after_seconds

DEFAULT_TIMEOUT = timedelta(seconds=10)  # of one request, connecting and reading the page
DEFAULT_RETRIES = 3  # further attempts at a page after 408, 429, a 5xx or no answer
DEFAULT_RATE = 5.0  # requests per second to the source, at most
FIRST_BACKOFF = 1.0  # seconds before the first retry when the server names no Retry-After
MAX_WAIT = 60.0  # seconds: the longest wait before a retry; a longer Retry-After fails
MAX_PAGE_BYTES = 64 * 1024 * 1024  # a page is held whole while its records are copied
EXCERPT_CHARS = 200  # of an answer that is not a page, quoted in the error
USER_AGENT = "q2c-console-reconcile"

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ABSENT = object()

# `data`, `links.next`: keys into nested objects, separated by dots.
DottedPath = Annotated[str, Field(pattern=r"^[^.\s]+(\.[^.\s]+)*$")]


class Clock(NamedTuple):
    """The time the source paces and waits by (tests give one that only pretends)."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


SYSTEM_CLOCK = Clock()


class HttpSource(BaseModel):
    """A paginated JSON API. `items` and `next` are dotted paths into each page; `fields`
    maps each canonical field to a dotted path into a record; header values may name
    environment variables as `${NAME}`, substituted when the source is read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["http"]
    url: HttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    items: DottedPath
    next: DottedPath | None = None
    fields: dict[str, DottedPath] = Field(min_length=1)
    timeout: Duration = DEFAULT_TIMEOUT
    retries: int = Field(default=DEFAULT_RETRIES, ge=0, le=10)
    rate: float = Field(default=DEFAULT_RATE, gt=0)

    def provides(self) -> tuple[str, ...]:
        return tuple(self.fields)

    def load(
        self, copy_into: StagingTable, environ: Mapping[str, str], clock: Clock = SYSTEM_CLOCK
    ) -> LoadResult:
        """Copy every record of every page into `copy_into`, a page at a time; see
        reconcile.sources for the contract."""
        rows = 0
        statement = copy_statement(copy_into)
        with _Pages(self, environ, clock) as pages:
            for number, url, page in pages:
                records = pages.rows(page, number, url, copy_into.columns)
                with copy_into.cursor.copy(statement) as copy:
                    for record in records:
                        copy.write_row(record)
                rows += len(records)
        return LoadResult(rows, self.provides())

    def probe(self, environ: Mapping[str, str], clock: Clock = SYSTEM_CLOCK) -> str:
        """The first page asked for: `GET <url> → 200, 50 records on the first page`."""
        with _Pages(self, environ, clock) as pages:
            number, url, page = next(iter(pages))
            count = len(pages.items(page, number, url))
        return f"GET {pages.masked(url)} → 200, {count} records on the first page"


class _Pages:
    """The pages of one reading of a source, with the secrets to keep out of every message."""

    def __init__(self, source: HttpSource, environ: Mapping[str, str], clock: Clock) -> None:
        self.source, self.clock = source, clock
        self.headers, self.secrets = _substituted(source.headers, environ)
        self.limiter = HostRateLimiter(source.rate, clock.now, clock.sleep)
        self.client = httpx.Client(
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": USER_AGENT, "accept": "application/json"},
        )

    def __enter__(self) -> _Pages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def __iter__(self) -> Iterator[tuple[int, str, Any]]:
        """(page number, its URL, the page) along the `next` links; a link back to a page
        already read fails rather than loop."""
        url, number, seen = self.source.url, 1, set()
        while True:
            seen.add(url)
            page = self.fetch(url, number)
            yield number, url, page
            link = _at_path(page, self.source.next) if self.source.next else None
            if link is _ABSENT or link is None or link == "":
                return
            if not isinstance(link, str):
                raise self.error(f"`{self.source.next}` is not a URL: {link!r}", number, url)
            url, number = urljoin(url, link), number + 1
            if url in seen:
                raise self.error(f"the next link leads back to an earlier page: {url}", number, url)

    def fetch(self, url: str, number: int) -> Any:
        """Page `number`, as JSON, after the retries it takes."""
        attempts = self.source.retries + 1
        for attempt in range(attempts):
            self.limiter.wait(urlsplit(url).netloc)
            answer = self.get(url, number)
            if not isinstance(answer, _Refusal):
                return answer
            if attempt + 1 == attempts:
                break
            wait = answer.retry_after
            if wait is None:
                wait = min(MAX_WAIT, FIRST_BACKOFF * 2**attempt)
            elif wait > MAX_WAIT:
                raise self.error(
                    f"{answer.reason}, asking to retry in {wait:g} s, longer than the "
                    f"{MAX_WAIT:g} s a source waits",
                    number,
                    url,
                )
            self.clock.sleep(wait)
        tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
        raise self.error(f"{answer.reason}; gave up after {tries}", number, url)

    def get(self, url: str, number: int) -> Any:
        """The page at `url`, or a _Refusal worth retrying; raises SourceError for an
        answer that asking again will not change."""
        timeout = self.source.timeout.total_seconds()
        deadline = self.clock.now() + timeout
        try:
            with self.client.stream("GET", url, headers=self.headers, timeout=timeout) as answer:
                body = bytearray()
                # The timeout bounds the whole page: a server that trickles it out does not
                # hold the run longer.
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) > MAX_PAGE_BYTES:
                        limit = MAX_PAGE_BYTES // 2**20
                        raise self.error(f"the page is larger than {limit} MiB", number, url)
                    if self.clock.now() > deadline:
                        return _Refusal(f"the page took longer than {timeout:g} s", None)
        except httpx.TimeoutException:
            return _Refusal(f"no answer within {timeout:g} s", None)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            failure = failure_of(exc)
            if failure.retryable:
                return _Refusal(failure.reason, None)
            raise self.error(failure.reason, number, url) from None
        status = answer.status_code
        if 200 <= status < 300:
            return self.parsed(bytes(body), number, url)
        said = f"answered {status}: {_excerpt(bytes(body))}".rstrip(": ")
        if status in (408, 429) or status >= 500:
            return _Refusal(said, retry_after_seconds(answer.headers.get("retry-after")))
        if 300 <= status < 400:
            said += " (a redirect, which sources do not follow: configure the final URL)"
        raise self.error(said, number, url)

    def parsed(self, body: bytes, number: int, url: str) -> Any:
        try:
            # Decimals, not floats: an amount is compared as the source wrote it.
            return json.loads(body, parse_float=Decimal)
        except ValueError:
            raise self.error(f"the page is not JSON: {_excerpt(body)}", number, url) from None

    def items(self, page: Any, number: int, url: str) -> list[Any]:
        items = _at_path(page, self.source.items)
        if items is _ABSENT:
            raise self.error(f"the page has no `{self.source.items}`", number, url)
        if not isinstance(items, list):
            raise self.error(f"`{self.source.items}` is not a list of records", number, url)
        return items

    def rows(
        self, page: Any, number: int, url: str, columns: tuple[str, ...]
    ) -> list[tuple[str | None, ...]]:
        """The staging rows of a page's records: a value per column, NULL for a field the
        source does not give or a record lacks, then where the record came from."""
        fields = self.source.fields
        rows = []
        for index, item in enumerate(self.items(page, number, url), 1):
            if not isinstance(item, dict):
                raise self.error(f"record {index} is not an object", number, url)
            try:
                values = [
                    None if column not in fields else _value(item, fields[column])
                    for column in columns
                ]
            except ValueError as exc:
                raise self.error(f"record {index}: a value {exc}", number, url) from None
            rows.append((*values, f"page {number} record {index}"))
        return rows

    def error(self, reason: str, number: int, url: str) -> SourceError:
        return SourceError(self.masked(reason), self.masked(f"page {number}, {url}"))

    def masked(self, text: str) -> str:
        """`text` without the header secrets nor what looks like one: a URL's password
        (`user:password@`) or a secret in its query string (`?api_key=…`)."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return configured().text(text) or text


class _Refusal(NamedTuple):
    """An answer that is not the page, which a later attempt may get."""

    reason: str
    retry_after: float | None


def _substituted(
    headers: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The headers with each `${NAME}` replaced by the variable's value, and those values
    (the secrets). A variable that is not set, or empty, fails the source."""
    secrets: list[str] = []
    resolved = {}
    for header, template in headers.items():
        for name in _VARIABLE.findall(template):
            if not environ.get(name):
                raise SourceError(f"${{{name}}} is not set (it is read for the {header} header)")
            secrets.append(environ[name])
        resolved[header] = _VARIABLE.sub(lambda match: environ[match.group(1)], template)
    # The longest first, so that a secret holding another is masked whole.
    return resolved, tuple(sorted(set(secrets), key=len, reverse=True))


def _at_path(document: Any, path: str) -> Any:
    """The value at a dotted path into nested objects, or _ABSENT."""
    for key in path.split("."):
        if not isinstance(document, dict) or key not in document:
            return _ABSENT
        document = document[key]
    return document


def _value(item: dict[str, Any], path: str) -> str | None:
    found = _at_path(item, path)
    return None if found is _ABSENT else as_text(found)


def _excerpt(body: bytes) -> str:
    text = body[: EXCERPT_CHARS * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"

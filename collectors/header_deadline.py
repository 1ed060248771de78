"""The collector's HTTP connections: a request's headers must arrive in time.

uvicorn times out a connection that is idle between requests, and the collector a body that
is slow to arrive (408), but nothing bounded the headers: a client sending a byte of them
every few seconds (slowloris) held its connection, and enough of them would use up the
process's file descriptors, the database connections' among them. The headers of each
request must be complete within `seconds` of the connection opening or of the previous
response ending; else the connection is closed, unanswered, as servers do.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers."""

    seconds = 10.0  # Q2C_BODY_READ_TIMEOUT_SECONDS, set by create_app in each process
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        waiting = bool(self.pipeline)  # a pipelined request's headers have arrived already
        super().on_response_complete()
        if not waiting and not self.transport.is_closing():
            self._arm()  # for the next request's

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

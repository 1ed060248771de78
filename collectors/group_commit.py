"""Group commit: requests hand their batches to writer threads, which store several
requests' batches in one transaction and answer each request only after that commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from collectors.batch import Batch
from collectors.writer import (
    StatementFailed,
    StorageRejected,
    StorageUnavailable,
    TelemetryWriter,
)
from q2c.masking import configured

log = logging.getLogger(__name__)

_STOP = object()


@dataclass
class _Pending:
    batch: Batch
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


class GroupCommitter:
    """Runs `threads` writers; `submit` returns once the batch is committed, or raises
    StorageUnavailable / StorageRejected / StatementFailed (see write_group)."""

    def __init__(
        self, writer_factory: Callable[[], TelemetryWriter], threads: int, max_records: int
    ) -> None:
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._max_records = max_records
        self._threads = [
            threading.Thread(
                target=self._run, args=(writer_factory(),), daemon=True, name=f"q2c-writer-{i}"
            )
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    async def submit(self, batch: Batch) -> None:
        """Store `batch`; returns after its transaction committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Pending(batch, future, loop))
        await future

    def close(self) -> None:
        """Finish what is queued, then stop the writer threads."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()

    def _run(self, writer: TelemetryWriter) -> None:
        try:
            while (group := self._next_group()) is not None:
                self._write_group(writer, group)
        finally:
            writer.close()

    def _next_group(self) -> list[_Pending] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        assert isinstance(first, _Pending)
        group, records = [first], first.batch.record_count
        while records < self._max_records:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)  # leave it for this thread's next turn
                break
            assert isinstance(item, _Pending)
            group.append(item)
            records += item.batch.record_count
        return group

    def _write_group(self, writer: TelemetryWriter, group: list[_Pending]) -> None:
        outcomes = write_group(writer, [pending.batch for pending in group])
        for pending, outcome in zip(group, outcomes, strict=True):
            _settle(pending, outcome)


def write_group(writer: TelemetryWriter, batches: list[Batch]) -> list[Exception | None]:
    """Store `batches` in one transaction; each one's outcome (None when stored). When the
    database refuses or fails the group for its data, the batches are written one by one,
    so that one request's bad data or a defect it trips never fails the others; when it
    cannot be reached, all wait alike."""
    merged = batches[0]
    if len(batches) > 1:
        merged = Batch()
        for batch in batches:
            merged.extend(batch)
    try:
        writer.write(merged)
    except (StorageRejected, StatementFailed) as exc:
        if len(batches) == 1:
            return [exc]
        log.warning(
            "a group of %d requests failed (%s); retrying one by one",
            len(batches),
            configured().text(str(exc)),
        )
        return [write_group(writer, [batch])[0] for batch in batches]
    except StorageUnavailable as exc:
        return [exc] * len(batches)
    except Exception as exc:  # a bug must not leave requests hanging
        log.exception("writer failed")
        return [StatementFailed(f"internal error: {type(exc).__name__}")] * len(batches)
    return [None] * len(batches)


def _settle(pending: _Pending, error: Exception | None) -> None:
    def resolve() -> None:
        if pending.future.done():
            return
        if error is None:
            pending.future.set_result(None)
        else:
            pending.future.set_exception(error)

    # RuntimeError: the event loop has shut down, so nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        pending.loop.call_soon_threadsafe(resolve)

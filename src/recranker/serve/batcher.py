"""Micro-batching of concurrent rank requests into one backend call.

Requests wait in a bounded queue; one worker thread takes the first waiting request, collects the
others that arrive within `window_s` (up to `max_batch`) and answers them with one
`Reranker.rank_many` call, so concurrent users share the backend's batched forward passes. A full
queue refuses at once (`QueueFull`): the service answers 503 with Retry-After instead of hanging.
A batch whose call raises is answered again item by item, so one bad request fails alone: the
others get the result they would have got by themselves.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The batcher's queue holds `queue_size` requests already."""


class Batcher:
    """Answers submitted items with `handle(items) -> results` (one result per item, in order),
    several items per call; `on_batch(n, seconds)` sees every call's size and time."""

    def __init__(self, handle: Callable[[Sequence[Any]], list[Any]], *, window_s: float = 0.01, max_batch: int = 16,
                 queue_size: int = 64, on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1 or queue_size < 1 or window_s < 0:
            raise ValueError("max_batch and queue_size must be at least 1, window_s not negative")
        self.handle, self.window_s, self.max_batch, self.on_batch = handle, window_s, max_batch, on_batch
        self._queue: queue.Queue[tuple[Any, Future]] = queue.Queue(maxsize=queue_size)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name="recranker-batcher", daemon=True)

    def start(self) -> "Batcher":
        self._thread.start()
        return self

    @property
    def waiting(self) -> int:
        """Requests in the queue, not yet taken into a batch."""
        return self._queue.qsize()

    def submit(self, item: Any) -> Future:
        """A future of `item`'s result; `QueueFull` when the queue is full or the batcher stops."""
        if self._stopping.is_set():
            raise QueueFull("the service is shutting down")
        future: Future = Future()
        try:
            self._queue.put_nowait((item, future))
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} requests are waiting already") from None
        return future

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new items, answer every queued one, then end the worker."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ----------------------------------------------------------------------------- worker
    def _work(self) -> None:
        while not (self._stopping.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            self._answer(batch)

    def _answer(self, batch: list[tuple[Any, Future]]) -> None:
        live = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = self._call([item for item, _ in live])
        except Exception as exc:  # one failing call never stops the worker
            if len(live) == 1:
                log.exception("a request failed")
                live[0][1].set_exception(exc)
                return
            log.warning("a batch of %d requests failed (%s: %s); answering them one by one", len(live),
                        type(exc).__name__, exc)
            for item, future in live:  # isolate the bad one(s): each item alone
                self._answer_alone(item, future)
            return
        for (_, future), result in zip(live, results):
            future.set_result(result)

    def _answer_alone(self, item: Any, future: Future) -> None:
        try:
            result = self._call([item])[0]
        except Exception as exc:
            log.exception("a request failed")
            future.set_exception(exc)
        else:
            future.set_result(result)

    def _call(self, items: list[Any]) -> list[Any]:
        """`handle(items)`, checked to answer one result per item, timed for `on_batch`."""
        started = time.perf_counter()
        results = list(self.handle(items))
        if len(results) != len(items):
            raise RuntimeError(f"the handler answered {len(results)} results for {len(items)} requests")
        if self.on_batch is not None:
            self.on_batch(len(items), time.perf_counter() - started)
        return results

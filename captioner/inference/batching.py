"""Micro-batching: requests that arrive close together are captioned in one CNN and decoder pass.

Hand-written because neither FastAPI nor uvicorn batches requests (TensorFlow Serving's batching
serves only SavedModels, not this Python process); it is a bounded queue and one worker thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

# Put on the queue by close(): the worker stops when it takes it.
_STOP = object()
# How often a worker waiting for announced items looks at the queue again.
_POLL_S = 0.001


class MicroBatcher:
    """Runs `work(items)` (one result per item, in order) on batches of submitted items.

    The worker takes the first waiting item, then whatever else arrives within `window_s`, up to
    `max_batch` items; it stops waiting early when nothing is queued or announced (see arriving),
    so a lone request is not held back. The queue is not bounded here: the service bounds the
    requests it admits (ServiceLimits.max_queue).
    """

    def __init__(self, work: Callable[[Sequence[Any]], Sequence[Any]], max_batch: int,
                 window_s: float) -> None:
        self._work, self._max_batch, self._window_s = work, max_batch, window_s
        self._queue: queue.Queue = queue.Queue()
        self._arriving = 0
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._worker.start()

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Announces an item being prepared (a request being read and decoded) for its span."""
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._lock:
                self._arriving -= 1

    def submit(self, item: object) -> Future:
        """A future for `item`'s result."""
        future: Future = Future()
        self._queue.put((item, future))
        return future

    def waiting(self) -> int:
        """How many items wait for the worker."""
        return self._queue.qsize()

    def close(self) -> None:
        """Stops the worker once the items already queued are done."""
        self._queue.put(_STOP)
        self._worker.join()

    def _next_batch(self) -> list[tuple[object, Future]] | None:
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        deadline = time.monotonic() + self._window_s
        while len(batch) < self._max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self._queue.empty() and not self._arriving):
                break
            try:
                entry = self._queue.get(timeout=min(remaining, _POLL_S))
            except queue.Empty:
                continue
            if entry is _STOP:
                self._queue.put(_STOP)  # seen again once this batch is done
                break
            batch.append(entry)
        return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            items = [item for item, _ in batch]
            try:
                results = self._work(items)
            # A failed batch fails its own requests, each with the error, and the worker goes on.
            except Exception as error:
                for _, future in batch:
                    future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)

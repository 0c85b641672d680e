"""Running an iterator a few items ahead in a background thread.

``GenerativeLoader(prefetch=k)`` merges its next ``k`` batches (reading the wrapped
loader, taking synthetic samples, concatenating) in a thread while the training step
runs, so a warm store costs the loop what a plain loader does. The items keep their
order; an exception raised while producing one is raised in the consumer's thread when
that item would have come; leaving the loop early (``break``, an exception in the step,
``close()``) stops the thread within one short wait and closes the source in it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Prefetcher"]

T = TypeVar("T")

#: Seconds between checks of the stop flag while the queue is full.
_POLL_S = 0.05
_ITEM, _END, _ERROR = range(3)


class Prefetcher(Generic[T]):
    """Iterate ``source`` up to ``depth`` items ahead in a daemon thread.

    Args:
        source: The iterator to run ahead; a generator is closed in the producing
            thread when iteration stops early (its ``finally`` blocks run there).
        depth: Items produced ahead of the consumer (>= 1).

    Example:
        >>> ahead = Prefetcher(iter(range(5)), depth=2)
        >>> list(ahead)
        [0, 1, 2, 3, 4]
        >>> def failing():
        ...     yield 1
        ...     raise KeyError("bad item")
        >>> it = Prefetcher(failing(), depth=2)
        >>> next(it)
        1
        >>> next(it)
        Traceback (most recent call last):
        ...
        KeyError: 'bad item'
    """

    def __init__(self, source: Iterator[T], depth: int) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._source = source
        self._queue: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="gdaload-prefetch", daemon=True)
        self._thread.start()

    def _put(self, entry: tuple[int, object]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as error:  # re-raised in the consumer's thread
            self._put((_ERROR, error))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == _ITEM:
            return value  # type: ignore[return-value]
        self._done = True
        self._thread.join()
        if kind == _ERROR:
            assert isinstance(value, BaseException)
            raise value
        raise StopIteration

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (it finishes the item it is producing) and drop what is queued."""
        self._done = True
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)

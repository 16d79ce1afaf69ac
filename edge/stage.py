"""A worker thread that finishes items in order while the caller's thread goes on to the next one.

``edgecam run`` is a three-stage pipeline: the capture thread reads and fits
frames, the main thread runs the model, and an :class:`OutputStage` takes the
CAM, boxes, events, annotation and sinks. Only the runtime's invoke is then
left on the thread that feeds it.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

from edge.checks import positive_int
from edge.errors import EdgecamError

__all__ = ["OutputStage", "splits"]

log = logging.getLogger(__name__)

_END = object()


def splits(worker: Any) -> bool:
    """True when ``worker`` has ``infer`` and ``finish`` (as :class:`edge.detector.Detector` has).

    Such a worker's inference runs on the thread that feeds the runtime and
    its finishing on an :class:`OutputStage`; any other is run whole.
    """
    return callable(getattr(worker, "infer", None)) and callable(getattr(worker, "finish", None))


class OutputStage:
    """Call ``handle(item)`` on a thread of its own for every item ``put``, in order.

    Args:
        handle: called once per item. An exception it raises ends the stage:
            the next ``put`` or ``close`` raises an EdgecamError naming it, so
            a handler that must go on after a bad item catches its own errors.
        queue_size: items waiting at most; ``put`` blocks beyond it, so a slow
            handler slows the producer instead of growing memory.
        name: the thread's name, for logs.

    Example:
        >>> done = []
        >>> with OutputStage(done.append) as stage:
        ...     for i in range(3):
        ...         stage.put(i)
        >>> done
        [0, 1, 2]
    """

    def __init__(self, handle: Callable[[Any], None], queue_size: int = 4, name: str = "output") -> None:
        positive_int("OutputStage.queue_size", queue_size)
        self.handle, self.name = handle, name
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.handled = 0

    def start(self) -> "OutputStage":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def put(self, item: Any) -> None:
        """Hand ``item`` on; blocks while the queue is full. Raises EdgecamError if the stage has ended."""
        if self._thread is None:
            raise EdgecamError(f"{self.name} stage is not started; call start() or use it as a context manager")
        while True:
            self._check()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Let the stage finish what it holds, then stop it. Raises EdgecamError if the handler failed."""
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self._thread.join()
        self._check(closing=True)

    def _check(self, closing: bool = False) -> None:
        if self.error is not None:
            raise EdgecamError(f"{self.name} stage stopped: {type(self.error).__name__}: {self.error}") from self.error
        if not closing and self._thread is not None and not self._thread.is_alive():
            raise EdgecamError(f"{self.name} stage is closed")

    def __enter__(self) -> "OutputStage":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    return
                self.handle(item)
                self.handled += 1
        except BaseException as exc:  # never die silently on a thread; a waiting put() sees it within 0.1 s
            self.error = exc
            log.error("%s stage stopped: %s", self.name, exc)

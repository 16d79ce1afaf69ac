"""The one frame loop: capture -> infer -> output stage -> finish.

``edgecam run`` (:func:`edge.pipeline.run`) and ``edgecam bench``
(:mod:`edge.bench`) both drive a :class:`FrameLoop`: the capture thread reads
each frame and fits it to the model input, the thread that drives the loop runs
the model, and an :class:`~edge.stage.OutputStage` finishes the frame (CAM,
boxes) and hands it to the caller's ``handle`` in frame order while the next
frame is inferred. The pipeline's ``handle`` adds events and sinks; the bench's
adds only timing.

Between the threads a frame travels as a :class:`Job`, a frozen dataclass
whose :class:`JobKind` says what its payload is.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from edge.capture import CapturedFrame, ThreadedCapture
from edge.errors import ConfigError, EdgecamError
from edge.results import FrameResult
from edge.stage import OutputStage, splits
from edge.tiling import TileSpec, detect_tiled

__all__ = ["FrameDetector", "JobKind", "Job", "FrameDone", "FrameLoop"]

Clock = Callable[[], float]


class FrameDetector(Protocol):
    """What the loop needs from a detector (:class:`edge.detector.Detector` fits).

    Optional, and used when present: ``prepare(frame)`` (run on the capture
    thread) with ``detect_prepared(prepared)``, and ``infer([prepared])`` with
    ``finish(inference) -> [FrameResult]`` (the output thread finishes then).
    """

    labels: Sequence[str]

    def detect(self, frame: np.ndarray) -> FrameResult: ...

    def detect_batch(self, frames: list[np.ndarray]) -> list[FrameResult]: ...


class JobKind(Enum):
    """What a :class:`Job`'s payload is."""

    INFERENCE = "inference"  # the raw inference; the output thread finishes it
    RESULT = "result"  # a finished FrameResult
    ERROR = "error"  # the exception inference raised


@dataclass(frozen=True)
class Job:
    """One frame on its way from the inference thread to the output thread.

    Attributes:
        item: the captured frame.
        kind: what ``payload`` is.
        payload: the raw inference, a FrameResult, or the exception.
        infer_ms: milliseconds the inference thread spent on it.
        wait_ms: milliseconds the inference thread waited for the frame.
    """

    item: CapturedFrame
    kind: JobKind
    payload: Any
    infer_ms: float = 0.0
    wait_ms: float = 0.0


@dataclass(frozen=True)
class FrameDone:
    """A finished frame, as the loop hands it to ``handle``.

    ``detect_ms`` is inference plus finishing (CAM, boxes), the model's whole
    cost of the frame; ``finished_at`` is the loop's clock when finishing ended.
    """

    item: CapturedFrame
    result: FrameResult
    detect_ms: float
    wait_ms: float
    finished_at: float


class FrameLoop:
    """Drive frames from a capture through a detector to ``handle``.

    Args:
        detector: see :class:`FrameDetector`.
        capture: started by :meth:`start` (or the context manager).
        handle: called once per finished frame with a :class:`FrameDone`, in frame order.
        on_error: called with ``(item, exception)`` for a frame that failed in
            inference, finishing or ``handle``; None lets the exception stop
            the output stage (the next :meth:`submit` or :meth:`close` raises).
        tile: tile each frame (see :mod:`edge.tiling`); None runs one inference per frame.
        tile_level: heatmap level for boxes when tiling (None: the detector's own).
        queue_size: frames waiting for the output thread at most.
        threaded: finish frames on an output thread; False finishes each one
            before :meth:`submit` returns (the bench does so for a detector
            that does not split, so a fake clock reads one thread).
        clock: the clock of ``*_ms`` and ``finished_at``.

    Example:
        >>> with FrameLoop(detector, ThreadedCapture(open_source("synthetic"), "all"), print) as loop:  # doctest: +SKIP
        ...     loop.drive(threading.Event(), max_frames=10)
        'max_frames'
    """

    def __init__(self, detector: Any, capture: ThreadedCapture, handle: Callable[[FrameDone], None], *,
                 on_error: Callable[[CapturedFrame, BaseException], None] | None = None,
                 tile: TileSpec | None = None, tile_level: float | None = None, queue_size: int = 4,
                 threaded: bool = True, clock: Clock = time.monotonic, name: str = "output") -> None:
        if tile is not None and not isinstance(tile, TileSpec):
            raise ConfigError(f"FrameLoop.tile must be a TileSpec or None; received {tile!r}")
        self.detector, self.capture, self.handle, self.on_error = detector, capture, handle, on_error
        self.tile, self.tile_level, self.clock = tile, tile_level, clock
        self.split = splits(detector)
        self.output = OutputStage(self._finish, queue_size, name=name) if threaded else None
        self.submitted = 0
        self.handled = 0
        self._progress = threading.Condition()

    # ---- lifecycle
    def start(self) -> "FrameLoop":
        self.capture.start()
        if self.output is not None:
            self.output.start()
        return self

    def close(self) -> None:
        """Stop the capture, then let the output thread finish what it holds (raises EdgecamError if it failed)."""
        self.capture.close()
        if self.output is not None:
            self.output.close()

    def __enter__(self) -> "FrameLoop":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the inference thread
    def take(self, timeout: float) -> CapturedFrame | None:
        """The next captured frame, or None after ``timeout`` seconds (see ``capture.done``)."""
        return self.capture.get(timeout=timeout)

    def infer(self, item: CapturedFrame, wait_ms: float = 0.0) -> Job:
        """The model's part of one frame; an exception becomes an ERROR job, finished in frame order."""
        t0 = self.clock()
        try:
            if self.tile is not None:
                kind, payload = JobKind.RESULT, detect_tiled(self.detector, item.frame, self.tile, self.tile_level)
            elif item.prepared is not None and self.split:
                kind, payload = JobKind.INFERENCE, self.detector.infer([item.prepared])  # fitted on the capture thread
            elif item.prepared is not None:
                kind, payload = JobKind.RESULT, self.detector.detect_prepared(item.prepared)
            else:
                kind, payload = JobKind.RESULT, self.detector.detect(item.frame)
        except Exception as exc:
            kind, payload = JobKind.ERROR, exc
        return Job(item, kind, payload, (self.clock() - t0) * 1000.0, wait_ms)

    def submit(self, item: CapturedFrame, wait_ms: float = 0.0) -> None:
        """Infer ``item`` here and hand it to the output stage (or finish it now when not threaded)."""
        job = self.infer(item, wait_ms)
        self.submitted += 1
        if self.output is not None:
            self.output.put(job)
        else:
            self._finish(job)

    def step(self, timeout: float) -> bool:
        """Take one frame (waiting up to ``timeout``) and submit it; False when none came."""
        t0 = self.clock()
        item = self.take(timeout)
        if item is None:
            return False
        self.submit(item, (self.clock() - t0) * 1000.0)
        return True

    def drive(self, stop: threading.Event, max_frames: int | None = None) -> str:
        """Submit frames until ``stop``, ``max_frames`` submitted or the source ends; return why it ended.

        One of ``stopped``, ``max_frames``, ``source ended``, ``source failed``.
        """
        while True:
            if stop.is_set():
                return "stopped"
            if max_frames is not None and self.submitted >= max_frames:
                return "max_frames"
            if not self.step(0.1) and self.capture.done:
                return "source failed" if self.capture.error is not None else "source ended"

    def wait_handled(self, count: int, timeout: float) -> None:
        """Block until ``count`` frames have been through ``handle`` (or failed).

        Raises:
            EdgecamError: the output stage stopped on an error, or ``timeout`` seconds passed.
        """
        with self._progress:
            done = self._progress.wait_for(lambda: self.handled >= count or self._failed() is not None, timeout)
        failed = self._failed()
        if failed is not None:
            raise EdgecamError(f"output stage stopped: {type(failed).__name__}: {failed}") from failed
        if not done:
            raise EdgecamError(f"the output stage did not finish {count} frames within {timeout:g} s")

    def _failed(self) -> BaseException | None:
        return None if self.output is None else self.output.error

    # ---- the output thread
    def _finish(self, job: Job) -> None:
        try:
            if job.kind is JobKind.ERROR:
                raise job.payload
            t0 = self.clock()
            result = self.detector.finish(job.payload)[0] if job.kind is JobKind.INFERENCE else job.payload
            t1 = self.clock()
            self.handle(FrameDone(job.item, result, job.infer_ms + (t1 - t0) * 1000.0, job.wait_ms, t1))
        except Exception as exc:
            if self.on_error is None:
                self._record_error(exc)
                raise
            self.on_error(job.item, exc)
        finally:  # on an error too, so a waiter wakes at once
            with self._progress:
                self.handled += 1
                self._progress.notify_all()

    def _record_error(self, exc: BaseException) -> None:
        # the stage records it too, but only after this returns; a waiter must see it when woken
        if self.output is not None and self.output.error is None:
            self.output.error = exc

"""Turn a noisy per-frame score into events: "a ship was in view from t0 to t1".

Per-frame classifier scores flicker. An exponential moving average damps the
noise, and two thresholds (enter above ``enter`` for ``min_frames`` frames,
leave below ``leave``) stop a score hovering near one threshold from opening
and closing an event on every frame.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Mapping

from edge.checks import positive_int
from edge.errors import reject_unknown_keys, ConfigError, FrameError

__all__ = ["ScoreSmoother", "HysteresisOptions", "EventKind", "Event", "EventUpdate", "EventTracker", "QuietWatch"]

log = logging.getLogger(__name__)


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha <= 1.0:
        raise ConfigError(f"smoothing alpha must be a number in (0, 1]; received {alpha!r}")
    return float(alpha)


def _check_score(score: float) -> float:
    value = float(score)
    if not math.isfinite(value):
        raise FrameError(f"expected a finite score; received {score!r}")
    return value


class ScoreSmoother:
    """Exponential moving average; the first value passes through unchanged.

    Starting from the first value instead of 0 avoids a slow ramp-up that would
    delay the first event after start.

    Args:
        alpha: weight of the newest value in (0, 1]; 1 disables smoothing.

    Example:
        >>> s = ScoreSmoother(0.5)
        >>> [s.update(x) for x in (1.0, 0.0, 0.0)]
        [1.0, 0.5, 0.25]
    """

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = _check_alpha(alpha)
        self.value: float | None = None

    def update(self, score: float) -> float:
        """Fold in one score and return the smoothed value."""
        x = _check_score(score)
        self.value = x if self.value is None else self.alpha * x + (1.0 - self.alpha) * self.value
        return self.value

    def reset(self) -> None:
        """Forget the history; the next value passes through."""
        self.value = None


@dataclass(frozen=True)
class HysteresisOptions:
    """Thresholds of the event state machine.

    Attributes:
        enter: smoothed score at or above which an event may start, in (0, 1].
        leave: smoothed score below which an open event ends, in [0, enter).
        min_frames: consecutive frames at or above ``enter`` needed to start (>= 1).
        interrupt_s: an open event is closed, marked interrupted, once no frame has come for this
            many seconds (a lost camera must not leave a ship "in view" for the whole outage); None: never.

    Example:
        >>> HysteresisOptions.from_dict({"enter": 0.7, "leave": 0.3}).min_frames
        3
    """

    enter: float = 0.6
    leave: float = 0.4
    min_frames: int = 3
    interrupt_s: float | None = 10.0

    def __post_init__(self) -> None:
        for name in ("enter", "leave"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"HysteresisOptions.{name} must be a number in [0, 1]; received {v!r}")
        if not self.leave < self.enter:
            raise ConfigError(
                f"HysteresisOptions needs leave < enter so a score near one threshold cannot flicker; "
                f"received enter={self.enter!r}, leave={self.leave!r}"
            )
        positive_int("HysteresisOptions.min_frames", self.min_frames)
        v = self.interrupt_s
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf):
            raise ConfigError(f"HysteresisOptions.interrupt_s must be None or a number > 0 (seconds); received {v!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HysteresisOptions":
        """Build from a mapping, rejecting unknown keys by name."""
        reject_unknown_keys(cls, data)
        return cls(**dict(data))


class EventKind(Enum):
    """Whether an update opens or closes an event."""

    START = "start"
    END = "end"


@dataclass(frozen=True)
class Event:
    """One period in which the tracked score stayed high.

    Attributes:
        id: 1, 2, ... in order of start.
        label: label given with the frame that started the event.
        start_frame: index of the first frame of the run that opened the event.
        start_t: time of that frame (the caller's clock, seconds).
        end_frame: index of the frame at which the event ended (first one below
            ``leave``, or the last frame seen on close); None while open.
        end_t: time of ``end_frame``; None while open.
        peak_score: highest raw score seen from ``start_frame`` on.
    """

    id: int
    label: str
    start_frame: int
    start_t: float
    end_frame: int | None = None
    end_t: float | None = None
    peak_score: float = 0.0

    def to_record(self) -> dict:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EventUpdate:
    """An event opened or closed on this frame.

    ``no_frame_s`` is set on an end that no frame caused: the event was
    interrupted after that many seconds without a frame (see :meth:`EventTracker.interrupt`).
    """

    kind: EventKind
    event: Event
    no_frame_s: float | None = None

    def to_record(self) -> dict:
        """JSON-ready dict: ``{"kind": "start"|"end", **event}``, plus ``interrupted`` and ``no_frame_s`` on an interruption."""
        record = {"kind": self.kind.value, **self.event.to_record()}
        if self.no_frame_s is not None:
            record.update(interrupted=True, no_frame_s=round(self.no_frame_s, 3))
        return record


class EventTracker:
    """Hysteresis state machine over a smoothed score.

    Args:
        options: thresholds; defaults to ``HysteresisOptions()``.
        smoother_alpha: EMA weight of the newest score in (0, 1].
        label: event label used when ``update`` is given none.

    Example:
        >>> tracker = EventTracker(HysteresisOptions(0.6, 0.4, 2), smoother_alpha=1.0)
        >>> [u.kind.value for i, s in enumerate([0.1, 0.9, 0.9, 0.5, 0.2]) if (u := tracker.update(i, i / 10, s))]
        ['start', 'end']
    """

    def __init__(self, options: HysteresisOptions | None = None, smoother_alpha: float = 0.5, label: str = "positive") -> None:
        self.options = options if options is not None else HysteresisOptions()
        if not isinstance(self.options, HysteresisOptions):
            raise ConfigError(f"expected HysteresisOptions; received {type(self.options).__name__}")
        self._smoother = ScoreSmoother(smoother_alpha)
        self._label = str(label)
        self._next_id = 1
        self._open: Event | None = None
        self._run = 0  # consecutive frames at or above enter while idle
        self._candidate: Event | None = None  # where the current run began
        self._last: tuple[int, float] | None = None

    @property
    def smoothed(self) -> float:
        """The latest smoothed score (0.0 before the first update)."""
        return 0.0 if self._smoother.value is None else self._smoother.value

    @property
    def active(self) -> Event | None:
        """The open event, if any."""
        return self._open

    def update(self, frame_index: int, t: float, score: float, label: str | None = None) -> EventUpdate | None:
        """Feed one frame's score; return an update when an event starts or ends.

        Args:
            frame_index: frame number, increasing.
            t: frame time in seconds (any monotonic clock).
            score: raw score of the tracked class, in [0, 1].
            label: label for an event that starts on this run; the tracker's default otherwise.

        Raises:
            FrameError: the score is NaN or infinite.
        """
        raw = _check_score(score)
        smoothed = self._smoother.update(raw)
        self._last = (int(frame_index), float(t))
        opts = self.options

        if self._open is not None:
            if smoothed < opts.leave:
                ended = dataclasses.replace(self._open, end_frame=int(frame_index), end_t=float(t))
                self._open = None
                return EventUpdate(EventKind.END, ended)
            if raw > self._open.peak_score:
                self._open = dataclasses.replace(self._open, peak_score=raw)
            return None

        if smoothed < opts.enter:
            self._run, self._candidate = 0, None
            return None
        if self._candidate is None:
            self._candidate = Event(0, label or self._label, int(frame_index), float(t), peak_score=raw)
        elif raw > self._candidate.peak_score:
            self._candidate = dataclasses.replace(self._candidate, peak_score=raw)
        self._run += 1
        if self._run < opts.min_frames:
            return None
        self._open = dataclasses.replace(self._candidate, id=self._next_id)
        self._next_id += 1
        self._run, self._candidate = 0, None
        return EventUpdate(EventKind.START, self._open)

    def quiet_for(self, now_t: float) -> float | None:
        """Seconds from the last frame seen to ``now_t`` (the clock of ``update``'s ``t``); None before any."""
        return None if self._last is None else now_t - self._last[1]

    def interrupt(self, now_t: float) -> EventUpdate | None:
        """Close an open event because no frame came (a lost camera), if ``interrupt_s`` has passed.

        The event ends at the last frame seen; the smoothed score and any
        half-built start are forgotten, so frames after the outage start afresh.
        Returns None when no event is open, none is due, or ``interrupt_s`` is None.

        Example:
            >>> tracker = EventTracker(HysteresisOptions(0.6, 0.4, 1, interrupt_s=5.0), smoother_alpha=1.0)
            >>> tracker.update(0, 0.0, 0.9).kind.value
            'start'
            >>> tracker.interrupt(3.0) is None, tracker.interrupt(31.0).to_record()["no_frame_s"]
            (True, 31.0)
        """
        quiet = self.quiet_for(now_t)
        limit = self.options.interrupt_s
        if self._open is None or quiet is None or limit is None or quiet < limit:
            return None
        update = self.close()
        self._smoother.reset()
        self._run, self._candidate = 0, None
        return None if update is None else dataclasses.replace(update, no_frame_s=quiet)

    def close(self) -> EventUpdate | None:
        """End an open event at the last frame seen (end of stream); None if none is open."""
        if self._open is None or self._last is None:
            return None
        ended = dataclasses.replace(self._open, end_frame=self._last[0], end_t=self._last[1])
        self._open = None
        return EventUpdate(EventKind.END, ended)


class QuietWatch:
    """Call ``on_quiet()`` while ``count()`` has not changed for ``after_s`` seconds, from a daemon thread.

    The run gives it the capture's count of frames read: when the camera
    sends nothing for ``after_s`` seconds, the open event is interrupted
    (:meth:`EventTracker.interrupt`), however far the frame loop has got.
    ``on_quiet`` is called at each poll until it returns True (it acted),
    then not again until the count has moved.

    Args:
        count: a counter that moves while all is well (read on the watch's thread).
        after_s: seconds without a change, > 0.
        on_quiet: what to do then; returns whether it acted. An exception from it is logged, and the watch goes on.
        poll_s: how often ``count`` is read.

    Example:
        >>> watch = QuietWatch(lambda: capture.stats()["read"], 10.0, close_open_event).start()  # doctest: +SKIP
    """

    def __init__(self, count: Callable[[], int], after_s: float, on_quiet: Callable[[], bool], poll_s: float = 0.25) -> None:
        for name, value in (("after_s", after_s), ("poll_s", poll_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigError(f"QuietWatch.{name} must be a number > 0; received {value!r}")
        self.count, self.after_s, self.on_quiet, self.poll_s = count, float(after_s), on_quiet, float(poll_s)
        self.fired = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="quiet-watch", daemon=True)

    def start(self) -> "QuietWatch":
        self._thread.start()
        return self

    def _watch(self) -> None:
        last, since, done = None, time.monotonic(), False
        while not self._stop.wait(self.poll_s):
            try:
                now, value = time.monotonic(), self.count()
                if value != last:
                    last, since, done = value, now, False
                elif not done and now - since >= self.after_s and self.on_quiet():
                    done = True
                    self.fired += 1
            except Exception:  # noqa: BLE001 - the watch must outlive one failed check
                log.exception("the quiet watch's check failed")

    def close(self) -> None:
        """Stop the thread and wait for it (a check in progress finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

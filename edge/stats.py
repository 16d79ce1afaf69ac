"""Per-stage latency statistics with memory that does not grow with run length.

A camera runs for weeks; keeping every duration would leak. Each stage keeps
the last ``capacity`` durations in a fixed numpy ring buffer, so percentiles
describe recent behaviour and memory is ``stages x capacity x 8`` bytes.
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import time
from typing import Iterator, Mapping

import numpy as np

from edge.checks import positive_int
from edge.errors import ConfigError

__all__ = ["LatencyStats", "RateWindow"]


class _Ring:
    """Fixed-size float64 ring buffer plus a total count."""

    def __init__(self, capacity: int) -> None:
        self.buf = np.empty(capacity, np.float64)
        self.pos = 0
        self.count = 0

    def add(self, value: float) -> None:
        self.buf[self.pos] = value
        self.pos = (self.pos + 1) % len(self.buf)
        self.count += 1

    def values(self) -> np.ndarray:
        """Kept values, oldest first."""
        if self.count < len(self.buf):
            return self.buf[: self.count].copy()
        return np.concatenate([self.buf[self.pos :], self.buf[: self.pos]])


class LatencyStats:
    """Collect durations per stage; report p50/p95/p99/mean over a recent window.

    Args:
        capacity: durations kept per stage (the window), >= 1.

    Example:
        >>> stats = LatencyStats(capacity=100)
        >>> for ms in range(1, 101):
        ...     stats.add("infer", ms)
        >>> stats.summary()["infer"]["p50"], stats.summary()["infer"]["count"]
        (50.5, 100)
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = positive_int("LatencyStats.capacity", capacity)
        self._rings: dict[str, _Ring] = {}

    @property
    def stages(self) -> list[str]:
        """Stage names in the order they were first seen."""
        return list(self._rings)

    def add(self, stage: str, ms: float) -> None:
        """Record one duration in milliseconds; non-finite or negative values are rejected."""
        value = float(ms)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"expected a finite duration >= 0 ms for stage {stage!r}; received {ms!r}")
        ring = self._rings.get(stage)
        if ring is None:
            ring = self._rings[stage] = _Ring(self.capacity)
        ring.add(value)

    def add_many(self, timings_ms: Mapping[str, float]) -> None:
        """Record one duration per stage, e.g. ``FrameResult.timings_ms``."""
        for stage, ms in timings_ms.items():
            self.add(stage, ms)

    @contextlib.contextmanager
    def timer(self, stage: str) -> Iterator[None]:
        """Context manager that records the wall time of its body under ``stage``."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.add(stage, (time.monotonic() - start) * 1000.0)

    def window(self, stage: str) -> np.ndarray:
        """The kept durations of a stage, oldest first (at most ``capacity``)."""
        ring = self._rings.get(stage)
        return np.zeros(0) if ring is None else ring.values()

    def count(self, stage: str) -> int:
        """All durations ever recorded for a stage, including those out of the window."""
        ring = self._rings.get(stage)
        return 0 if ring is None else ring.count

    def percentile(self, stage: str, q: float) -> float:
        """The ``q``-th percentile (0..100, linear interpolation as numpy) of the window; NaN if empty."""
        values = self.window(stage)
        return float(np.percentile(values, q)) if len(values) else float("nan")

    def nbytes(self) -> int:
        """Bytes held by the buffers; fixed once every stage has been seen."""
        return sum(r.buf.nbytes for r in self._rings.values())

    def summary(self, digits: int = 3) -> dict[str, dict[str, float]]:
        """``{stage: {count, window, mean, p50, p95, p99, max}}``, statistics over the window."""
        out: dict[str, dict[str, float]] = {}
        for stage, ring in self._rings.items():
            values = ring.values()
            p50, p95, p99 = np.percentile(values, [50, 95, 99])
            out[stage] = {
                "count": ring.count,
                "window": len(values),
                "mean": round(float(values.mean()), digits),
                "p50": round(float(p50), digits),
                "p95": round(float(p95), digits),
                "p99": round(float(p99), digits),
                "max": round(float(values.max()), digits),
            }
        return out


class RateWindow:
    """Events per second over the last ``window_s`` seconds, read against the clock.

    The rate is the number of events inside ``(now - window_s, now]`` divided
    by the window (while the run is younger than the window: the events after
    the first, divided by the time since the first), so it falls to 0 while nothing arrives instead
    of repeating the last interval. Memory is bounded by ``max_events``.
    Safe to share between threads (the run adds, a status line and ``/metrics`` read).

    Args:
        window_s: the window in seconds, > 0.
        max_events: events kept at most (a ring); the rate saturates at ``max_events / window_s``.

    Example:
        >>> rate = RateWindow(window_s=2.0)
        >>> for i in range(11):
        ...     rate.add(i * 0.1)
        >>> rate.per_second(now=1.0), rate.per_second(now=10.0)
        (10.0, 0.0)
    """

    def __init__(self, window_s: float = 5.0, max_events: int = 4096) -> None:
        if isinstance(window_s, bool) or not isinstance(window_s, (int, float)) or not window_s > 0:
            raise ConfigError(f"RateWindow.window_s must be a number > 0; received {window_s!r}")
        if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 2:
            raise ConfigError(f"RateWindow.max_events must be an int >= 2; received {max_events!r}")
        self.window_s = float(window_s)
        self._times: "collections.deque[float]" = collections.deque(maxlen=max_events)
        self._first: float | None = None
        self._lock = threading.Lock()

    def add(self, t: float) -> None:
        """Note one event at time ``t`` (seconds, monotonic, not decreasing)."""
        with self._lock:
            if self._first is None:
                self._first = t
            self._times.append(t)

    def per_second(self, now: float) -> float:
        """Events per second in the window ending at ``now``; 0.0 before the first event."""
        with self._lock:
            times = self._times
            while times and times[0] <= now - self.window_s:
                times.popleft()
            count, first = len(times), self._first
        if not count or first is None:
            return 0.0
        young = now - first < self.window_s  # the first event opened the window: it is not counted
        span = now - first if young else self.window_s
        if span <= 0:
            return 0.0
        return round((count - young) / span, 3)

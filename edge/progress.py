"""``edgecam run``'s progress: a refreshed line on a terminal, a periodic one-line status in a log.

On a terminal (stderr is a TTY) the line is rewritten in place every
``interval_s`` seconds (default 2); under systemd or with stderr sent to a
file, one plain line is written every ``interval_s`` seconds (default 60), so
the journal shows the run is alive without a line per frame. Both read the
run's own counters (``edge.pipeline``'s vitals: frames, fps over the last few
seconds, events, dropped, corrupt, reconnects, the age of the last frame), on
a daemon thread of their own, so a stalled camera shows as "no frame for 31 s"
instead of a line that stops moving::

    edgecam run: 12,345 frames (41%) | 14.6 fps | events 3 | dropped 12 | corrupt 0 | 0:14:05

Why no progress-bar library: the device installs only the edge extras, which
do not include tqdm or rich, and the same line must also go to a log, where a
bar's carriage returns only clutter the journal. The writer is the few lines
below.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, Callable, TextIO

from edge.checks import positive_int
from edge.errors import ConfigError

__all__ = ["Progress", "known_length", "status_line"]

Vitals = Callable[[], "dict[str, Any]"]


def known_length(source: Any, stride: int = 1, max_frames: int | None = None) -> int | None:
    """Frames the run will take from ``source``, when known (stills, synthetic clips, video files), else None."""
    total = None
    try:
        total = len(source)
    except TypeError:
        path = getattr(source, "path", None)
        if path is not None and not getattr(source, "is_live", True):
            import cv2

            cap = cv2.VideoCapture(str(path))  # reads the container's header, not the frames
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT) if cap.isOpened() else 0
            cap.release()
            total = int(count) if math.isfinite(count) and count > 0 else None
    if total is not None:
        total = -(-total // max(1, stride))
    if max_frames is not None:
        total = max_frames if total is None else min(total, max_frames)
    return total


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def status_line(v: dict[str, Any], elapsed_s: float, total: int | None = None, stale_s: float = 5.0) -> str:
    """One status line from the run's counters.

    Example:
        >>> status_line({"frames": 12345, "fps": 14.63, "events": 3, "dropped": 12, "corrupt": 0}, 845, total=30000)
        'edgecam run: 12,345 frames (41%) | 14.6 fps | events 3 | dropped 12 | corrupt 0 | 0:14:05'
    """
    frames = int(v.get("frames") or 0)
    done = f" ({100 * frames / total:.0f}%)" if total else ""
    parts = [f"edgecam run: {frames:,} frames{done}", f"{float(v.get('fps') or 0.0):.1f} fps",
             f"events {v.get('events') or 0}", f"dropped {v.get('dropped') or 0}", f"corrupt {v.get('corrupt') or 0}"]
    if v.get("reconnects"):
        parts.append(f"reconnects {v['reconnects']}")
    age = v.get("last_frame_age_s")
    if isinstance(age, (int, float)) and age > stale_s:
        parts.append(f"NO FRAME for {age:.0f} s")
    parts.append(_clock(elapsed_s))
    return " | ".join(parts)


class Progress:
    """Write :func:`status_line` every ``interval_s`` seconds from a daemon thread, until ``close``.

    Args:
        vitals: returns the run's counters (``edge.pipeline.run`` attaches its own, see :meth:`attach`).
        total: frames expected, for the share done; None when unknown (a camera).
        stream: where to write (default stderr).
        tty: rewrite one line in place (default: whether ``stream`` is a terminal).
        interval_s: seconds between lines (default 2 on a terminal, 60 otherwise).

    Example:
        >>> with Progress(total=1000) as progress:  # doctest: +SKIP
        ...     summary = run(detector, source, options, on_frame=progress)
    """

    def __init__(self, vitals: Vitals | None = None, total: int | None = None, stream: TextIO | None = None,
                 tty: bool | None = None, interval_s: float | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        interval = (2.0 if self.tty else 60.0) if interval_s is None else interval_s
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            raise ConfigError(f"Progress.interval_s must be a number > 0; received {interval_s!r}")
        positive_int("Progress.total", total, allow_none=True)
        self.vitals, self.total, self.interval_s = vitals, total, float(interval)
        self.lines = 0
        self._frames = 0
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._width = 0
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()

    def attach(self, vitals: Vitals) -> None:
        """Read the run's counters from ``vitals`` (called by ``edge.pipeline.run`` when given this as ``on_frame``)."""
        self.vitals = vitals

    def __call__(self, item: Any, result: Any, record: dict) -> None:
        """``on_frame``: counts frames, for when no vitals are attached."""
        self._frames += 1

    def write(self) -> None:
        """Write one status line now."""
        v = self.vitals() if self.vitals is not None else {"frames": self._frames}
        line = status_line(v, time.monotonic() - self._started, self.total)
        try:
            if self.tty:  # pad over a longer previous line, return to its start
                self.stream.write("\r" + line.ljust(self._width))
                self._width = len(line)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: progress is not worth failing the run for
            self._stop.set()
            return
        self.lines += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.write()
            except Exception:  # noqa: BLE001 - a counter read racing the run's end must not print a traceback
                continue

    def close(self) -> None:
        """Stop; on a terminal, end the refreshed line so what follows starts on a line of its own."""
        if self._stop.is_set() and not self._thread.is_alive():
            return
        self._stop.set()
        self._thread.join(timeout=2.0)
        if self.tty and self.lines:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

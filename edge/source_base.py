"""The frame-source extension point: :class:`FrameSource`, the base every source subclasses.

Its own module so that sources in files of their own (:mod:`edge.picamera2_source`, a plugin's)
and :mod:`edge.sources`, which lists them all, import it without importing each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from edge.errors import ConfigError, SourceError
from edge.preprocess import check_frame

__all__ = ["FrameSource"]


def _cv2() -> Any:
    import cv2  # imported on use: a Picamera2-only device can run without OpenCV capture

    return cv2


def _bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return frame  # left as is so check_frame names the odd shape


class FrameSource(ABC):
    """Base of every frame source: ``open()``, ``read()``, ``close()``.

    Subclasses implement ``_open`` and ``_read`` (and ``_close`` if they hold
    something); the base makes ``open``/``close`` idempotent, allows reopening
    after ``close`` (reconnects), and validates every frame.

    Attributes:
        is_live: True for cameras and streams (reconnect on failure), False for
            files (end of data is the end).
        fps: nominal frame rate if the source knows it, else None.
        media_ms: the source's timestamp of the last frame read, in ms from
            its start (a video file's position, a clip's frame time), or None
            where the source has none (cameras, streams, image folders).
        file_name: the file the last frame came from (a folder of stills), or None.

    Example:
        >>> with open_source("synthetic:3") as src:  # doctest: +SKIP
        ...     frame = src.read()
    """

    is_live: bool = False
    fps: float | None = None
    media_ms: float | None = None
    file_name: str | None = None
    _is_open: bool = False

    def open(self) -> None:
        """Open the source; a no-op when already open. Raises SourceError on failure."""
        if not self._is_open:
            self._open()
            self._is_open = True

    def read(self) -> np.ndarray | None:
        """The next RGB frame, or None at the end of the stream (or a dropped stream)."""
        if not self._is_open:
            raise SourceError(f"{self!r} is not open; call open() or use it as a context manager")
        frame = self._read()
        return None if frame is None else check_frame(frame, f" from {self!r}")

    def close(self) -> None:
        """Release the device or file; safe to call twice."""
        if self._is_open:
            self._is_open = False
            self._close()

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _read(self) -> np.ndarray | None: ...

    def _close(self) -> None:
        pass

    def __enter__(self) -> "FrameSource":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_fps(fps: float | None) -> float | None:
    if fps is None:
        return None
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
        raise ConfigError(f"expected fps as a number in (0, 1000] or None; received {fps!r}")
    return float(fps)

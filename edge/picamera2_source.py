"""A Raspberry Pi camera through picamera2, which is imported only when the source is opened."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge.errors import ConfigError, SourceError
from edge.source_base import FrameSource, _bgr_to_rgb, _check_fps

__all__ = ["Picamera2Source"]

log = logging.getLogger("edge.sources")


class Picamera2Source(FrameSource):
    """A Raspberry Pi camera through picamera2 (imported only when opened).

    Args:
        size: ``(width, height)`` of the main stream.
        fps: frame rate to fix through libcamera's ``FrameDurationLimits``
            (both limits at ``1e6 / fps`` microseconds), or None for the
            camera's default.
    """

    is_live = True

    def __init__(self, size: tuple[int, int] = (640, 480), fps: float | None = None) -> None:
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"expected size (width, height) of positive ints; received {size!r}")
        self.size = (int(size[0]), int(size[1]))
        self.requested_fps = _check_fps(fps)
        self.fps = self.requested_fps
        self._cam: Any = None

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise SourceError(
                "Picamera2Source needs the picamera2 package, which is not installed "
                "(on Raspberry Pi OS: sudo apt install python3-picamera2, and create the venv "
                f"with --system-site-packages); received ImportError: {exc}"
            ) from exc
        try:
            cam = Picamera2()
            # libcamera names formats by register order: "RGB888" is B, G, R in memory
            controls = {}
            if self.requested_fps:
                frame_us = int(round(1_000_000 / self.requested_fps))
                controls["FrameDurationLimits"] = (frame_us, frame_us)
            cam.configure(cam.create_video_configuration(main={"size": self.size, "format": "RGB888"}, controls=controls))
            cam.start()
        except Exception as exc:
            raise SourceError(f"cannot start the Pi camera at {self.size}: {exc}") from exc
        self._cam = cam

    def _read(self) -> np.ndarray | None:
        return _bgr_to_rgb(self._cam.capture_array("main"))

    def _close(self) -> None:
        try:
            self._cam.stop()
        finally:
            self._cam.close()
            self._cam = None

    def __repr__(self) -> str:
        fps = f", fps={self.requested_fps:g}" if self.requested_fps else ""
        return f"Picamera2Source(size={self.size}{fps})"

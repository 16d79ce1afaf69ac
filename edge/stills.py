"""A folder of stills: an annotated copy of each still (or of each flagged one), named after its file.

A folder of stills is not a film: its images may differ in size and in
time. ``edgecam run`` on one gives one ``frames.jsonl`` record per file with
its name (``"file"``), and this sink writes the annotated picture of each to
``stills/<name>.jpg`` (``<name>-<frame>.jpg`` when two files share a stem).
The video, if asked for, keeps the stills of one size per segment; a single
``video.mp4`` keeps the first size and leaves the others out, counted (see
:func:`fits_video`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.atomic import write_bytes
from edge.errors import ConfigError
from edge.results import FrameResult
from edge.sinks import Sink, StorageError

__all__ = ["StillsSink", "fits_video", "STILLS_CHOICES"]

STILLS_CHOICES = ("all", "flagged", "none")


class StillsSink(Sink):
    """Write ``stills/<stem>.jpg`` for every record with a ``"file"`` (``which="flagged"``: only positive ones).

    Args:
        folder: output folder (created on the first still).
        which: ``"all"`` or ``"flagged"`` (a record with any positive label).
        jpeg_quality: 1..100.

    Example:
        >>> sink = StillsSink("runs/x/stills", which="flagged")  # doctest: +SKIP
    """

    def __init__(self, folder: str | Path, which: str = "all", jpeg_quality: int = 90) -> None:
        if which not in ("all", "flagged"):
            raise ConfigError(f"StillsSink.which must be 'all' or 'flagged'; received {which!r}")
        if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100:
            raise ConfigError(f"StillsSink.jpeg_quality must be an int in [1, 100]; received {jpeg_quality!r}")
        self.folder, self.which, self.jpeg_quality = Path(folder), which, jpeg_quality
        self.written = 0
        self._used: set[str] = set()

    def _write(self, frame_rgb: np.ndarray, result: FrameResult, record: dict) -> None:
        name = record.get("file")
        if not isinstance(name, str) or (self.which == "flagged" and not any(record.get("positive") or ())):
            return
        stem = Path(name).stem or "still"
        out = f"{stem}.jpg" if f"{stem}.jpg" not in self._used else f"{stem}-{record.get('frame')}.jpg"
        self._used.add(out)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ConfigError(f"could not encode the annotated still of {name!r} as JPEG")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_bytes(self.folder / out, jpeg.tobytes())
        except OSError as exc:
            raise StorageError.from_os_error("cannot write the annotated still", self.folder / out, exc) from exc
        self.written += 1


def fits_video(video: Sink, frame: np.ndarray) -> bool:
    """Whether a still of this size can go into the video: a single ``video.mp4`` has one size (its first);
    segments start a new one at each size, so they take any."""
    size = getattr(video, "size", None)
    return not (isinstance(size, tuple) and size != (frame.shape[1], frame.shape[0]))

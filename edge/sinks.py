"""Where results go: JSON lines, an annotated video, event records with snapshots.

A device is switched off without warning. Each sink writes so that what is on
disk after a crash is usable: whole JSON lines, a video finalised on close, a
snapshot that is complete or absent.
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.annotate import Annotator
from edge.atomic import write_bytes
from edge.errors import ConfigError, EdgecamError, FrameError
from edge.results import FrameResult

__all__ = ["Sink", "SinkError", "JsonlSink", "VideoSink", "EventSink", "to_json_line"]

log = logging.getLogger(__name__)


class SinkError(EdgecamError):
    """A sink cannot write: the file cannot be opened, or it was already closed."""


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def to_json_line(record: dict) -> bytes:
    """One compact JSON object and a newline, UTF-8 (numpy values allowed)."""
    return (json.dumps(record, separators=(",", ":"), default=_json_default, allow_nan=False) + "\n").encode("utf-8")


class Sink(ABC):
    """Base of sinks: ``write(frame_rgb, result, record)`` and an idempotent ``close()``.

    Example:
        >>> with JsonlSink("out/frames.jsonl") as sink:  # doctest: +SKIP
        ...     sink.write(frame, result, {"frame": 0, **result.to_record()})
    """

    _closed: bool = False

    def write(self, frame_rgb: np.ndarray, result: FrameResult, record: dict) -> None:
        """Write one frame's output. ``frame_rgb`` is what to show (the pipeline passes it annotated)."""
        if self._closed:
            raise SinkError(f"{type(self).__name__} is closed; expected write() before close()")
        self._write(frame_rgb, result, record)

    @abstractmethod
    def _write(self, frame_rgb: np.ndarray, result: FrameResult, record: dict) -> None: ...

    def close(self) -> None:
        """Flush and release; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:
        pass

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AppendFile:
    """An O_APPEND file written with one ``os.write`` per record.

    No Python buffer sits between records and the kernel, so a killed process
    leaves whole lines; O_APPEND keeps lines whole if two writers share a file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SinkError(f"cannot open {str(self.path)!r} for appending: {exc}") from exc

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # os.write may write less than asked (rare on files, but allowed)
            view = view[os.write(self.fd, view) :]  # type: ignore[arg-type]

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


class JsonlSink(Sink):
    """Append ``record`` as one JSON line per frame (frame and result are not stored).

    Args:
        path: the ``.jsonl`` file; created with its folder, appended to if present.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = _AppendFile(self.path)
        self.lines = 0

    def _write(self, frame_rgb: np.ndarray, result: FrameResult, record: dict) -> None:
        self._file.append(to_json_line(record))
        self.lines += 1

    def _close(self) -> None:
        self._file.close()


class VideoSink(Sink):
    """Write frames to an mp4 (``mp4v``), opened on the first frame with its size.

    ``close()`` must run for the file to be playable: it writes the index. The
    pipeline closes sinks on SIGTERM/SIGINT for that reason.

    Args:
        path: output ``.mp4``.
        fps: frame rate stored in the file (> 0).
        annotator: drawn before writing; None writes frames as given.
    """

    def __init__(self, path: str | Path, fps: float = 15.0, annotator: Annotator | None = None) -> None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
            raise ConfigError(f"VideoSink.fps must be a number in (0, 1000]; received {fps!r}")
        self.path, self.fps, self.annotator = Path(path), float(fps), annotator
        self.size: tuple[int, int] | None = None  # (width, height) once opened
        self.frames = 0
        self._writer: Any = None

    def _write(self, frame_rgb: np.ndarray, result: FrameResult, record: dict) -> None:
        frame = self.annotator.annotate(frame_rgb, result) if self.annotator else frame_rgb
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise FrameError(f"expected an RGB uint8 (H, W, 3) frame for the video; received {frame.dtype} {frame.shape}")
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not writer.isOpened():
                raise SinkError(f"cannot open a mp4v video writer for {str(self.path)!r} at {size[0]}x{size[1]}")
            self._writer, self.size = writer, size
        elif size != self.size:
            # VideoWriter silently drops frames of another size; say so instead
            raise FrameError(f"expected a {self.size[0]}x{self.size[1]} frame for {self.path.name}; received {size[0]}x{size[1]}")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class EventSink(Sink):
    """Event log and snapshots: ``events.jsonl`` plus ``event_0001.jpg`` at each start.

    ``write`` looks at ``record["event"]`` (set by the pipeline from
    :meth:`edge.events.EventUpdate.to_record`) and ignores frames without one.

    Args:
        folder: output folder (created).
        jpeg_quality: snapshot quality, 1..100.
    """

    def __init__(self, folder: str | Path, jpeg_quality: int = 90) -> None:
        if not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100:
            raise ConfigError(f"EventSink.jpeg_quality must be an int in [1, 100]; received {jpeg_quality!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jpeg_quality = jpeg_quality
        self._file = _AppendFile(self.folder / "events.jsonl")
        self.events = 0

    def _write(self, frame_rgb: np.ndarray, result: FrameResult, record: dict) -> None:
        event = record.get("event")
        if event:
            self.record_event(event, frame_rgb)

    def record_event(self, event: dict, frame_rgb: np.ndarray | None = None) -> None:
        """Log one event record; on a start with a frame, save the snapshot first.

        Used directly for an end that has no frame (the event closed when the
        stream ended).
        """
        if self._closed:
            raise SinkError("EventSink is closed; expected record_event() before close()")
        line = dict(event)
        if line.get("kind") == "start":
            self.events += 1
            if frame_rgb is not None:
                name = f"event_{int(line.get('id', self.events)):04d}.jpg"
                bgr = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
                ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if ok:
                    write_bytes(self.folder / name, jpeg.tobytes())
                    line["snapshot"] = name
                else:
                    log.warning("could not encode the snapshot of event %s", line.get("id"))
        self._file.append(to_json_line(line))

    def _close(self) -> None:
        self._file.close()

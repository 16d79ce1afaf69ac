"""Where results go: JSON lines, an annotated video, event records with snapshots.

A device is switched off without warning, or its disk fills. Each sink writes
so that what is on disk after a crash is usable: whole JSON lines (a line the
disk refused half-way is cut off again), a video finalised on close (see
:mod:`edge.segments` for video that survives a kill), a snapshot that is
complete or absent. A write the disk refuses raises :class:`StorageError`, so
the caller can apply one policy to every sink (see :mod:`edge.recording`).
"""

from __future__ import annotations

import datetime as _dt
import errno as errno_codes
import json
import logging
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.annotate import Annotator
from edge.atomic import write_bytes
from edge.checks import non_negative_int, positive_int
from edge.errors import ConfigError, EdgecamError, FrameError
from edge.records import FrameRecord, as_record
from edge.results import FrameResult

__all__ = ["Sink", "SinkError", "StorageError", "JsonlSink", "VideoSink", "EventSink", "to_json_line", "utc_iso"]

log = logging.getLogger(__name__)


class SinkError(EdgecamError):
    """A sink cannot write: the file cannot be opened, or it was already closed."""


class StorageError(SinkError):
    """The file system refused a write (full, over quota, read-only, I/O error).

    Whatever the refused write left half-done has been removed, so the files
    keep only whole records. ``errno_name`` is ``"ENOSPC"``, ``"EDQUOT"``, ``"EROFS"``, ...
    """

    def __init__(self, message: str, errno: int | None = None, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.path = None if path is None else Path(path)

    @property
    def errno_name(self) -> str:
        return errno_codes.errorcode.get(self.errno, f"errno {self.errno}") if self.errno is not None else "EIO"

    @classmethod
    def from_os_error(cls, what: str, path: str | Path, exc: OSError) -> "StorageError":
        return cls(f"{what} {str(path)!r}: {exc.strerror or exc}", exc.errno, path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def utc_iso(epoch_s: float) -> str:
    """A wall-clock time (``time.time()``) as ISO 8601 UTC to the millisecond, the form records carry.

    Example:
        >>> utc_iso(1_800_000_000.25)
        '2027-01-15T08:00:00.250Z'
    """
    if isinstance(epoch_s, bool) or not isinstance(epoch_s, (int, float)) or epoch_s != epoch_s:
        raise ConfigError(f"expected seconds since the epoch as a number; received {epoch_s!r}")
    stamp = _dt.datetime.fromtimestamp(epoch_s, _dt.timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def to_json_line(record: dict) -> bytes:
    """One compact JSON object and a newline, UTF-8 (numpy values allowed)."""
    return (json.dumps(record, separators=(",", ":"), default=_json_default, allow_nan=False) + "\n").encode("utf-8")


class Sink(ABC):
    """Base of sinks: ``write(frame_rgb, result, record)`` and an idempotent ``close()``.

    A sink is one file: subclass this, implement ``_write`` (and ``_close``),
    and register it (see :mod:`edge.sink_registry`) to make ``edgecam run --sink`` offer it.

    Example:
        >>> with JsonlSink("out/frames.jsonl") as sink:  # doctest: +SKIP
        ...     sink.write(frame, result, FrameRecord(frame=0, t=0.0, result_fields=result.to_record()))
    """

    _closed: bool = False

    def write(self, frame_rgb: np.ndarray, result: FrameResult, record: FrameRecord | dict) -> None:
        """Write one frame's output. ``frame_rgb`` is what to show (the pipeline passes it annotated).

        ``record`` is a :class:`~edge.records.FrameRecord`; a plain dict is converted to one.
        """
        if self._closed:
            raise SinkError(f"{type(self).__name__} is closed; expected write() before close()")
        self._write(frame_rgb, result, as_record(record))

    @abstractmethod
    def _write(self, frame_rgb: np.ndarray, result: FrameResult, record: FrameRecord) -> None: ...

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
    leaves whole lines. A disk that fills in the middle of a record accepts
    part of it: the file is then truncated back to the record's start, so it
    never ends in half a line.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.size = os.fstat(self.fd).st_size
        except OSError as exc:
            raise StorageError.from_os_error("cannot open for appending", self.path, exc) from exc
        self._torn = False  # a cut-off failed: start the next record on a line of its own

    def append(self, data: bytes) -> None:
        """Write ``data`` whole, or raise StorageError with the file as it was before."""
        if self.fd is None:
            raise SinkError(f"{self.path} is closed")
        if self._torn:
            data = b"\n" + data
        start, view = self.size, memoryview(data)
        try:
            while view:  # os.write may write less than asked (a disk that fills up does)
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            if len(view) != len(data):
                try:
                    os.ftruncate(self.fd, start)  # shrinking needs no free space
                except OSError:
                    self._torn = True
            raise StorageError.from_os_error("cannot append to", self.path, exc) from exc
        self.size, self._torn = start + len(data), False

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


class JsonlSink(Sink):
    """Append ``record`` as one JSON line per frame (frame and result are not stored).

    With ``max_bytes``, the file is rotated before a line would take it past
    that size: ``frames.jsonl`` is renamed to ``frames.000001.jsonl`` (then
    ``.000002``, ...) and a new ``frames.jsonl`` started, so reading the
    numbered parts in order and then ``frames.jsonl`` gives every line in
    order. With ``keep``, only the newest ``keep`` parts stay; older ones are
    deleted (logged, and counted in ``deleted_parts``).

    Args:
        path: the ``.jsonl`` file; created with its folder, appended to if present.
        max_bytes: rotate at this size; None never rotates.
        keep: rotated parts to keep; 0 keeps them all.

    Example:
        >>> with JsonlSink("out/frames.jsonl", max_bytes=50_000_000, keep=20) as sink:  # doctest: +SKIP
        ...     sink.write(frame, result, record)  # an edge.records.FrameRecord
    """

    def __init__(self, path: str | Path, max_bytes: int | None = None, keep: int = 0) -> None:
        positive_int("JsonlSink.max_bytes", max_bytes, allow_none=True)
        non_negative_int("JsonlSink.keep (0 keeps every part)", keep)
        self.path, self.max_bytes, self.keep = Path(path), max_bytes, keep
        self._file = _AppendFile(self.path)
        self.lines = 0
        self.deleted_parts = 0
        self.parts = max(self.part_numbers(), default=0)

    def part_numbers(self) -> list[int]:
        """Numbers of the rotated parts on disk, oldest first."""
        pattern = re.compile(re.escape(self.path.stem) + r"\.(\d{6,})" + re.escape(self.path.suffix))
        found = (pattern.fullmatch(p.name) for p in self.path.parent.glob(f"{self.path.stem}.*{self.path.suffix}"))
        return sorted(int(m.group(1)) for m in found if m)

    def _part(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.{number:06d}{self.path.suffix}")

    def _write(self, frame_rgb: np.ndarray, result: FrameResult, record: FrameRecord) -> None:
        line = to_json_line(record.to_dict())
        if self.max_bytes is not None and self._file.size > 0 and self._file.size + len(line) > self.max_bytes:
            self._rotate()
        self._file.append(line)
        self.lines += 1

    def _rotate(self) -> None:
        self._file.close()
        try:
            os.replace(self.path, self._part(self.parts + 1))
        except OSError as exc:
            self._file = _AppendFile(self.path)  # keep appending to the unrotated file
            raise StorageError.from_os_error("cannot rotate", self.path, exc) from exc
        self.parts += 1
        self._file = _AppendFile(self.path)
        if self.keep:
            for number in self.part_numbers()[: -self.keep]:
                try:
                    self._part(number).unlink()
                except FileNotFoundError:
                    continue
                self.deleted_parts += 1
                log.info("deleted %s (keeping the newest %d parts of %s)", self._part(number).name, self.keep, self.path.name)

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

    def _write(self, frame_rgb: np.ndarray, result: FrameResult, record: FrameRecord) -> None:
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

    ``write`` looks at ``record.event`` (set by the pipeline from
    :meth:`edge.events.EventUpdate.to_record`) and ignores frames without one.
    An event line without a ``time`` of its own takes the frame record's
    ``time`` (the wall-clock capture time of the frame that opened or closed it).

    A snapshot the disk refuses does not cost the event: its line is still
    written (without ``snapshot``), then StorageError is raised.

    Args:
        folder: output folder (created).
        jpeg_quality: snapshot quality, 1..100.
        run_id: stamped as ``"run"`` on every line; None stamps nothing.
    """

    def __init__(self, folder: str | Path, jpeg_quality: int = 90, run_id: str | None = None) -> None:
        if not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100:
            raise ConfigError(f"EventSink.jpeg_quality must be an int in [1, 100]; received {jpeg_quality!r}")
        self.folder = Path(folder)
        self.jpeg_quality, self.run_id = jpeg_quality, run_id
        self._file = _AppendFile(self.folder / "events.jsonl")
        self.events = 0
        self.lines = 0

    def _write(self, frame_rgb: np.ndarray, result: FrameResult, record: FrameRecord) -> None:
        event = record.event
        if event:
            if record.time is not None and "time" not in event:
                event = {**event, "time": record.time}
            self.record_event(dict(event), frame_rgb)

    def record_event(self, event: dict, frame_rgb: np.ndarray | None = None) -> None:
        """Log one event record; on a start with a frame, save the snapshot first.

        Used directly for an end that has no frame (the event closed when the
        stream ended).
        """
        if self._closed:
            raise SinkError("EventSink is closed; expected record_event() before close()")
        line = dict(event) if self.run_id is None else {"run": self.run_id, **event}
        refused: StorageError | None = None
        if line.get("kind") == "start":
            self.events += 1
            if frame_rgb is not None:
                name = f"event_{int(line.get('id', self.events)):04d}.jpg"
                bgr = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
                ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if not ok:
                    log.warning("could not encode the snapshot of event %s", line.get("id"))
                else:
                    try:
                        write_bytes(self.folder / name, jpeg.tobytes())
                        line["snapshot"] = name
                    except OSError as exc:  # the event line matters more than its picture
                        refused = StorageError.from_os_error("cannot write the snapshot", self.folder / name, exc)
        self._file.append(to_json_line(line))
        self.lines += 1
        if refused is not None:
            raise refused

    def _close(self) -> None:
        self._file.close()

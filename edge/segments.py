"""Video that survives a kill: closed MP4 segments of a few seconds, each renamed into place when complete.

An MP4 is playable only once its index (the ``moov`` box) is written, and
OpenCV writes it in ``release()``. A single long ``video.mp4`` is therefore
lost whole by a SIGKILL, a power cut or a full disk. Here every segment is a
complete MP4 of its own: written in a hidden sub-folder
(``.writing/000007.mp4``: OpenCV picks the container by the name's extension,
so the open file must end in ``.mp4`` too), released, checked (its top-level
boxes tile the file and include ``moov``), fsynced and only then renamed to
``000007.mp4`` and listed in ``segments.jsonl``. Any ``*.mp4`` in the folder
is whole; a kill loses the open segment only, at most ``segment_s`` seconds
(it stays in ``.writing/`` without an index).

Why OpenCV's VideoWriter and not an ffmpeg subprocess (``-f segment``): OpenCV
is already the edge runtime's video library (its wheels bring their own FFmpeg),
while an ``ffmpeg`` binary is one more package a device image may lack, and
piping raw frames to it costs a copy of every frame. ffmpeg's segment muxer
also writes segments under their final names, so a reader cannot tell a
finished one from the open one without a rename step like this one.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edge.annotate import Annotator
from edge.errors import ConfigError, FrameError
from edge.results import FrameResult
from edge.sinks import Sink, SinkError, StorageError, _AppendFile, to_json_line

__all__ = ["SegmentedVideoSink", "mp4_complete", "opencv_writer"]

log = logging.getLogger(__name__)

WriterFactory = Callable[[str, float, "tuple[int, int]"], Any]
_now = time.monotonic  # the default clock, looked up when a sink is made (tests replace it)


def opencv_writer(path: str, fps: float, size: tuple[int, int]) -> Any:
    """OpenCV's MPEG-4 Part 2 (``mp4v``) writer: in every opencv-python wheel, cheap enough for a Pi."""
    return cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)


def mp4_complete(path: str | os.PathLike[str]) -> bool:
    """True when the top-level MP4 boxes tile the file exactly and include ``moov`` and ``mdat``.

    A file cut short by a full disk, or one whose writer never wrote its
    index, fails this check; it reads a few bytes per box, not the frames.

    Example:
        >>> mp4_complete("video/000001.mp4")  # doctest: +SKIP
        True
    """
    size = os.path.getsize(path)
    seen, pos = set(), 0
    with open(path, "rb") as fh:
        while pos < size:
            fh.seek(pos)
            head = fh.read(8)
            if len(head) < 8:
                return False
            length, kind = struct.unpack(">I4s", head)
            if length == 1:  # 64-bit size follows the type
                big = fh.read(8)
                if len(big) < 8:
                    return False
                length = struct.unpack(">Q", big)[0]
            elif length == 0:  # the box runs to the end of the file
                length = size - pos
            if length < 8:
                return False
            seen.add(kind)
            pos += length
    return pos == size and {b"moov", b"mdat"} <= seen


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _no_space(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


@dataclass
class _Open:
    number: int
    tmp: Path
    writer: Any
    size: tuple[int, int]
    opened_at: float
    frames: int = 0
    first: dict | None = None
    last: dict | None = None
    slots: int = 0  # video frames written: source frames, repeated or skipped to follow the capture clock
    t0: float | None = None  # capture time of the first frame (the segment's time 0)
    gap_before_s: float | None = None  # the gap in capture times that ended the previous segment
    previous: np.ndarray | None = None  # the last BGR frame written, repeated to fill a short gap


class SegmentedVideoSink(Sink):
    """Annotated video in closed segments of at most ``segment_s`` seconds: ``000001.mp4``, ``000002.mp4``, ...

    With ``timing="capture"`` (a live source) frame timing follows the
    capture clock (each record's ``"t"``), not the rate a stream claims; with
    ``"media"`` (a file) the source's own clock (``"media_ms"``); with
    ``"sequence"``, or in a record without that time, each frame is one video
    frame. A frame goes to video frame ``round((t - t0) * fps)`` of its segment, so a frame that comes late is preceded by repeats of the
    one before, and one that comes early for its slot is left out of the video
    (counted in ``skipped``; its record is in ``frames.jsonl``). A segment's
    duration is then the wall time it covers, within a frame. A gap in capture
    times of ``gap_s`` or more (a lost camera) is not filled: it closes the
    segment, and the next one starts at the next frame with ``gap_before_s``
    in its line.

    A segment closes after ``round(segment_s * fps)`` video frames or ``segment_s``
    seconds of wall time since it opened, whichever comes first (a slow camera
    does not hold a segment open for longer), on a gap, and when the frame size
    changes. ``segments.jsonl`` gets one line per closed segment: file, first
    and last frame, frames (source frames in it), video_frames, duration_s,
    times, gap_before_s, size, bytes.

    A segment that does not close complete (the disk filled, the writer
    reported a failed write) is deleted, and StorageError is raised; earlier
    segments are untouched.

    Args:
        folder: output folder (created on the first frame).
        fps: frame rate stored in each segment, in (0, 1000].
        segment_s: longest segment in seconds, in (0, 3600].
        annotator: drawn before writing; None writes frames as given.
        run_id: stamped as ``"run"`` on every ``segments.jsonl`` line.
        writer_factory: ``factory(path, fps, (w, h))`` returning an object with
            ``isOpened()``, ``write(bgr)`` and ``release()``; OpenCV's by default.
        clock: seconds, monotonic; None: ``time.monotonic``.
        timing: ``"capture"``, ``"media"`` or ``"sequence"`` (see above).
        gap_s: a gap in capture times at least this long ends the segment instead of being filled.
        on_closed: called after each segment is renamed into place and listed (``--retain`` deletes old ones
            here); an exception from it is logged, not raised.

    Example:
        >>> with SegmentedVideoSink("runs/x/video", fps=15, segment_s=10) as sink:  # doctest: +SKIP
        ...     sink.write(frame, result, {"frame": 0, "t": 0.0})
    """

    def __init__(self, folder: str | Path, fps: float = 15.0, segment_s: float = 10.0, annotator: Annotator | None = None,
                 run_id: str | None = None, writer_factory: WriterFactory | None = None,
                 clock: Callable[[], float] | None = None, on_closed: Callable[[], Any] | None = None,
                 timing: str = "sequence", gap_s: float = 2.0) -> None:
        for name, value, top in (("fps", fps, 1000), ("segment_s", segment_s, 3600)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= top:
                raise ConfigError(f"SegmentedVideoSink.{name} must be a number in (0, {top}]; received {value!r}")
        self.folder, self.fps, self.segment_s = Path(folder), float(fps), float(segment_s)
        self.annotator, self.run_id = annotator, run_id
        self.factory = writer_factory or opencv_writer
        self.clock = clock or _now
        self.on_closed = on_closed
        if isinstance(gap_s, bool) or not isinstance(gap_s, (int, float)) or not gap_s > 0:
            raise ConfigError(f"SegmentedVideoSink.gap_s must be a number > 0; received {gap_s!r}")
        self.gap_s = float(gap_s)
        if timing not in ("capture", "media", "sequence"):
            raise ConfigError(f"SegmentedVideoSink.timing must be 'capture', 'media' or 'sequence'; received {timing!r}")
        self.timing = timing
        self.skipped = 0  # frames left out because an earlier one already filled their video frame
        self._gap: float | None = None  # a gap that closed the last segment, for the next one's line
        self.frames_per_segment = max(1, round(self.segment_s * self.fps))
        self.segments = 0  # closed and renamed into place
        self.frames = 0  # frames in closed segments
        self.discarded = 0  # frames in segments that could not be closed complete
        self._open: _Open | None = None
        self._next = 1
        self._index: _AppendFile | None = None

    @property
    def open_frames(self) -> int:
        """Frames in the segment being written (lost if the process is killed now)."""
        return 0 if self._open is None else self._open.frames

    def _write(self, frame_rgb: np.ndarray, result: FrameResult, record: dict) -> None:
        frame = self.annotator.annotate(frame_rgb, result) if self.annotator else frame_rgb
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise FrameError(f"expected an RGB uint8 (H, W, 3) frame for the video; received {frame.dtype} {frame.shape}")
        size = (frame.shape[1], frame.shape[0])
        t = {"capture": record.get("t"), "media": record.get("media_ms"), "sequence": None}[self.timing]
        t = None if isinstance(t, bool) or not isinstance(t, (int, float)) else float(t) / (1000.0 if self.timing == "media" else 1.0)
        if self._open is not None and self._open.size != size:
            self._finish()  # a new size starts a new segment: a segment has one size
        if self._open is not None and t is not None and self._open.last is not None and self._open.last["t"] is not None:
            gap = t - self._open.last["t"]
            if gap >= self.gap_s:  # a lost camera: the segment ends at its last frame, the gap is not filmed
                self._gap = round(gap, 3)
                self._finish()
        if self._open is None:
            self._start(size)
            self._open.t0, self._open.gap_before_s, self._gap = t, self._gap, None
        seg = self._open
        # half up, not Python's half to even: frames exactly between two slots alternate evenly
        slot = seg.slots if t is None or seg.t0 is None else math.floor((t - seg.t0) * self.fps + 0.5)
        if slot < seg.slots:  # came early: its video frame is taken
            self.skipped += 1
            seg.frames += 1
            seg.last = {"frame": record.get("frame"), "t": t}
            return
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        repeats = [seg.previous] * (slot - seg.slots) if seg.previous is not None else []
        for image in (*repeats, bgr):
            if seg.writer.write(image) is False:
                # OpenCV 5 reports a failed write; 4.x returns None, and the check at close finds it
                seg.frames += 1  # this frame is lost with the segment
                refused = self._refused(seg, "the writer could not write frame " + str(record.get("frame", "?")))
                self._discard()
                raise refused
        seg.slots += len(repeats) + 1
        seg.previous = bgr
        seg.frames += 1
        where = {"frame": record.get("frame"), "t": t}
        seg.first, seg.last = seg.first or where, where
        if seg.slots >= self.frames_per_segment or self.clock() - seg.opened_at >= self.segment_s:
            self._finish()

    def _start(self, size: tuple[int, int]) -> None:
        number, self._next = self._next, self._next + 1
        tmp = self.folder / ".writing" / f"{number:06d}.mp4"
        try:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))  # an OSError here names the cause
        except OSError as exc:
            raise StorageError.from_os_error("cannot create the video segment", tmp, exc) from exc
        writer = self.factory(str(tmp), self.fps, size)
        if not writer.isOpened():
            tmp.unlink(missing_ok=True)
            raise SinkError(f"cannot open a video writer for {str(tmp)!r} at {size[0]}x{size[1]}")
        self._open = _Open(number, tmp, writer, size, self.clock())

    def _refused(self, seg: _Open, why: str) -> StorageError:
        code = errno.ENOSPC if _no_space(self.folder) else errno.EIO
        return StorageError(f"video segment {seg.number:06d} ({seg.frames} frames) discarded: {why}"
                            f"{' (no space left on the device)' if code == errno.ENOSPC else ''}", code, seg.tmp)

    def _discard(self) -> None:
        seg, self._open = self._open, None
        if seg is None:
            return
        try:
            seg.writer.release()
        except Exception:  # the file goes anyway
            log.debug("release of a discarded segment failed", exc_info=True)
        seg.tmp.unlink(missing_ok=True)
        self.discarded += seg.frames

    def _finish(self) -> None:
        """Release, check, fsync and rename the open segment, then list it in segments.jsonl."""
        seg, self._open = self._open, None
        if seg is None:
            return
        seg.writer.release()
        final = self.folder / f"{seg.number:06d}.mp4"
        try:
            complete = seg.frames > 0 and mp4_complete(seg.tmp)
            if complete:
                _fsync(seg.tmp)  # the data reaches the disk before the name does
                os.replace(seg.tmp, final)
                _fsync(self.folder, directory=True)
        except OSError as exc:
            seg.tmp.unlink(missing_ok=True)
            self.discarded += seg.frames
            raise StorageError.from_os_error(f"video segment {seg.number:06d} discarded: cannot finish", seg.tmp, exc) from exc
        if not complete:
            refused = self._refused(seg, "the file was not written completely (no index)")
            seg.tmp.unlink(missing_ok=True)
            self.discarded += seg.frames
            raise refused
        self.segments += 1
        self.frames += seg.frames
        line = {"segment": seg.number, "file": final.name, "first_frame": seg.first["frame"], "last_frame": seg.last["frame"],
                "frames": seg.frames, "video_frames": seg.slots, "duration_s": round(seg.slots / self.fps, 3),
                "t_first": seg.first["t"], "t_last": seg.last["t"], "gap_before_s": seg.gap_before_s, "fps": self.fps,
                "width": seg.size[0], "height": seg.size[1], "bytes": final.stat().st_size}
        if self._index is None:
            self._index = _AppendFile(self.folder / "segments.jsonl")
        self._index.append(to_json_line(line if self.run_id is None else {"run": self.run_id, **line}))
        if self.on_closed is not None:
            try:
                self.on_closed()
            except Exception:
                log.exception("after closing video segment %06d", seg.number)

    def _close(self) -> None:
        try:
            self._finish()
        finally:
            if self._index is not None:
                self._index.close()

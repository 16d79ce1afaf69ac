"""Where a run records, and what it does when the disk cannot take more.

``edgecam run --out DIR`` records each run into a folder of its own, so a
restart (systemd's ``Restart=on-failure``, a power cut) never touches what an
earlier run wrote::

    DIR/0007-20250314T101502Z/   frames.jsonl (+ frames.000001.jsonl ... when rotated),
                                 events/, video/000001.mp4 ... + segments.jsonl, summary.json
    DIR/latest -> 0007-20250314T101502Z

The folder name is the run id, stamped as ``"run"`` on every record. It starts
with a sequence number so the folders sort in run order even when a device
without a real-time clock boots with the wrong date.

Storage policy, the same for every sink (see :class:`Recorder`): a write the
disk refuses (full, over quota, read-only) is reported once, as one log line,
and the run goes on: frames are still detected, events still opened and
closed and the live view still published; the video stops for the rest of the
run (it is the largest writer, and its open segment is deleted to give the
small records room); frame and event records the disk refuses are counted,
never half-written. The run then ends with exit code 1 (see :func:`outcome`).
``min_free_mb`` stops the video before the disk is full at all.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edge.errors import ConfigError, reject_unknown_keys
from edge.results import RECORD_SCHEMA_VERSION, FrameResult
from edge.runfolder import RESERVE_NAME as _RESERVE, RunFolder, latest_run
from edge.sinks import EventSink, JsonlSink, Sink, StorageError, VideoSink, utc_iso

__all__ = ["RecordingOptions", "RunFolder", "latest_run", "Recorder", "outcome", "json_safe", "EXIT_CODES"]

log = logging.getLogger(__name__)

EXIT_CODES = {
    0: "ran to the end (source ended or --max-frames) and recorded everything",
    1: "ran, but lost data or hit errors (frames failed, a sink or the disk refused writes, the source failed)",
    2: "bad input or configuration; nothing was run",
    130: "stopped by SIGINT after a clean flush",
    143: "stopped by SIGTERM after a clean flush",
}
_SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}
_ERRNO_WORDS = {"ENOSPC": "disk full", "EDQUOT": "disk quota exceeded", "EROFS": "file system is read-only", "EIO": "I/O error"}
_SPACE_CHECK_S = 1.0  # statvfs is cheap, but once a second is enough to see a disk fill


@dataclass(frozen=True)
class RecordingOptions:
    """How a run's records are laid out on disk.

    Attributes:
        run_id: stamped as ``"run"`` on every frame, event and segment record; None stamps nothing.
        segment_s: video in closed segments of at most this many seconds (``video/000001.mp4``, ...);
            None writes one ``video.mp4``, playable only once the run closes it.
        min_free_mb: stop the video when the free space under the output folder drops below this, after ``retain``
            (if set) has deleted the oldest segments it may (0: never).
        jsonl_max_mb: rotate ``frames.jsonl`` at this size; None never rotates.
        jsonl_keep: rotated ``frames.jsonl`` parts kept (0 keeps all).
        retain: ``--retain`` limits on the closed video segments of every run under the output root, e.g.
            ``"8GB"``, ``"7d"`` or ``"8GB,7d"`` (see :mod:`edge.retention`); needs ``segment_s``. None: no limit.
        stills: for a folder of stills, ``stills/<name>.jpg`` annotated for ``"all"``, ``"flagged"`` or ``"none"``.
        outage_s: a gap longer than this between the capture times of two frames of a live source
            is an outage, written to ``frames.jsonl`` as its own record (see :meth:`Recorder.write`); None: never.

    Example:
        >>> RecordingOptions.from_dict({"segment_s": 10, "jsonl_max_mb": 50, "jsonl_keep": 20}).segment_s
        10
    """

    run_id: str | None = None
    segment_s: float | None = None
    min_free_mb: float = 0.0
    jsonl_max_mb: float | None = None
    jsonl_keep: int = 0
    outage_s: float | None = 5.0
    retain: str | None = None
    stills: str = "all"

    def __post_init__(self) -> None:
        def number(v: Any) -> bool:
            return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)

        checks = (
            ("run_id", self.run_id is None or (isinstance(self.run_id, str) and re.fullmatch(r"[\w.-]{1,64}", self.run_id)),
             "None or 1-64 letters, digits, '.', '_' or '-'"),
            ("segment_s", self.segment_s is None or (number(self.segment_s) and 0 < self.segment_s <= 3600), "None or in (0, 3600]"),
            ("min_free_mb", number(self.min_free_mb) and self.min_free_mb >= 0, "a number >= 0"),
            ("jsonl_max_mb", self.jsonl_max_mb is None or (number(self.jsonl_max_mb) and self.jsonl_max_mb > 0), "None or > 0"),
            ("jsonl_keep", isinstance(self.jsonl_keep, int) and not isinstance(self.jsonl_keep, bool) and self.jsonl_keep >= 0,
             "an int >= 0"),
            ("stills", self.stills in ("all", "flagged", "none"), "'all', 'flagged' or 'none'"),
            ("outage_s", self.outage_s is None or (number(self.outage_s) and self.outage_s > 0), "None or a number > 0 (seconds)"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"RecordingOptions.{name} must be {expected}; received {getattr(self, name)!r}")
        if self.retain is not None:
            from edge.retention import RetainPolicy

            RetainPolicy.parse(self.retain)  # a malformed limit is refused here, before anything is recorded
            if self.segment_s is None:
                raise ConfigError(f"RecordingOptions.retain needs segment_s (closed segments to delete); "
                                  f"received retain {self.retain!r} with one video.mp4")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RecordingOptions":
        """Build from plain data, rejecting unknown keys by name."""
        reject_unknown_keys(cls, data)
        return cls(**dict(data))


class _SpaceReserve:
    """A few KiB set aside at the start so ``summary.json`` can be written even on a full disk."""

    def __init__(self, folder: Path, nbytes: int = 64 * 1024) -> None:
        self.path: Path | None = folder / _RESERVE
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.posix_fallocate(fd, 0, nbytes)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("could not set %d KiB aside for summary.json in %s: %s", nbytes // 1024, folder, exc)
            self.release()

    def release(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def free_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged process may still write under ``folder``; None if unknown."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class Recorder:
    """The run's sinks, written under one storage policy (see the module docstring).

    Args:
        folder: the run folder.
        options: layout and limits.
        clock: seconds, monotonic (None: ``time.monotonic``); free space is looked at once a second at most.
        started: the ``clock`` reading that a record's ``"t"`` counts from; with it, an outage still going on
            when the run closes is recorded too (None: only outages that a later frame ends).
    """

    def __init__(self, folder: str | os.PathLike[str], options: RecordingOptions | None = None,
                 clock: Callable[[], float] | None = None, started: float | None = None) -> None:
        self.folder, self.options, self.clock = Path(folder), options or RecordingOptions(), clock or time.monotonic
        self.started = started
        self.outages = {"count": 0, "seconds": 0.0, "longest_s": 0.0}
        self._last_seen: tuple[Any, float, Any] | None = None  # (frame, t, time) of the last frame of a live source
        self._source: Any = None  # the "source" of the last frame record: an outage record names it too
        self.sinks: dict[str, Sink] = {}
        self.retention = None  # edge.retention.Retention with options.retain
        self.events: EventSink | None = None
        self.video_stopped: str | None = None
        self.sink_errors = 0
        self.storage_errors: dict[str, int] = {}
        self.lost: dict[str, int] = {}
        self._first_storage_error: str | None = None
        self._space_checked = -math.inf
        self._reserve = _SpaceReserve(self.folder)

    # ---- opening
    def open_records(self) -> None:
        """Open ``frames.jsonl`` and ``events/``."""
        opts = self.options
        max_bytes = None if opts.jsonl_max_mb is None else max(1, int(opts.jsonl_max_mb * 1e6))
        self.sinks["frames"] = JsonlSink(self.folder / "frames.jsonl", max_bytes=max_bytes, keep=opts.jsonl_keep)
        self.events = self.sinks["events"] = EventSink(self.folder / "events", run_id=opts.run_id)

    def open_video(self, fps: float, live: bool | None = None) -> None:
        """Start the video: segments under ``video/`` (``segment_s``) or one ``video.mp4``.

        Segments of a ``live`` source follow the capture clock, those of a file its own media clock
        (see :class:`edge.segments.SegmentedVideoSink`); None writes each frame as one video frame.
        """
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= 1000):
            log.warning("the source reports %r fps; the video is written at 15 fps", fps)
            fps = 15.0
        if self.options.segment_s is None:
            if live:
                # one file holds one frame rate: a camera slower than it claims, or an outage, shortens the video
                log.warning("one video.mp4 (--segment-seconds 0) is written at %g fps, frame after frame; its duration "
                            "follows the camera's clock only in segments (the default)", fps)
            self.sinks["video"] = VideoSink(self.folder / "video.mp4", fps=fps)
        else:
            from edge.segments import SegmentedVideoSink

            if self.options.retain is not None:
                from edge.retention import RetainPolicy, Retention

                # in a run folder (named by its run id) the limit covers every run under the --out root
                root = self.folder.parent if self.folder.name == self.options.run_id else self.folder
                self.retention = Retention(root, RetainPolicy.parse(self.options.retain))
                self.retention.apply()  # earlier runs may already be over the limit
            self.sinks["video"] = SegmentedVideoSink(self.folder / "video", fps=fps, segment_s=self.options.segment_s,
                                                     run_id=self.options.run_id,
                                                     timing="sequence" if live is None else "capture" if live else "media",
                                                     on_closed=None if self.retention is None else self.retention.apply)

    @property
    def video_active(self) -> bool:
        return "video" in self.sinks and self.video_stopped is None

    # ---- writing
    def write(self, frame_rgb: np.ndarray, result: FrameResult, record: dict) -> int:
        """Give one frame to every sink under the policy; returns how many sinks failed.

        A frame of a live source (a record without ``media_ms``) whose capture
        time ``"t"`` comes more than ``outage_s`` after the previous one's is
        preceded in ``frames.jsonl`` by an outage record::

            {"run": ..., "schema_version": 1, "source": ..., "kind": "outage", "start_t": 12.4, "end_t": 44.1,
             "duration_s": 31.7, "last_frame": 180, "next_frame": 181, "start_time": "...Z", "end_time": "...Z",
             "ongoing": false}

        (docs/schemas/outage-record.schema.json; ``source`` is the frame records' own.)

        Frame records carry no ``"kind"``, so a reader tells them apart by it.
        """
        failed = 0
        t = record.get("t")
        if self.options.outage_s is not None and "media_ms" not in record and isinstance(t, (int, float)):
            last, self._last_seen = self._last_seen, (record.get("frame"), float(t), record.get("time"))
            self._source = record.get("source", self._source)
            if last is not None and t - last[1] > self.options.outage_s:
                failed += self._outage(last, self._last_seen)
        if "file" in record and "stills" not in self.sinks and self.options.stills != "none":
            from edge.stills import StillsSink

            self.sinks["stills"] = StillsSink(self.folder / "stills", self.options.stills)
        for name, sink in self.sinks.items():
            if name == "video" and not (self._video_may_write(record) and self._fits_video(sink, frame_rgb, record)):
                self.lost["video"] = self.lost.get("video", 0) + 1
                continue
            try:
                sink.write(frame_rgb, result, record)
            except StorageError as exc:
                failed += 1
                self._refused(name, exc, record.get("frame"))
            except Exception:
                failed += 1
                self.sink_errors += 1
                # a traceback for the first few, then one now and then: a broken sink must not flood the log
                if self.sink_errors <= 5 or self.sink_errors % 100 == 0:
                    log.exception("sink %s failed on frame %s (%d sink errors so far)", name, record.get("frame"), self.sink_errors)
        return failed

    def record_event(self, event: dict) -> None:
        """Log an event record that comes with no frame (an event closed at the end of the run)."""
        if self.events is None:
            return
        try:
            self.events.record_event(event)
        except StorageError as exc:
            self._refused("events", exc, event.get("end_frame"))

    def _outage(self, before: tuple[Any, float, Any], after: tuple[Any, float, Any], ongoing: bool = False) -> int:
        """Write one outage record to ``frames.jsonl``; returns 1 if the disk refused it."""
        duration = after[1] - before[1]
        self.outages["count"] += 1
        self.outages["seconds"] = round(self.outages["seconds"] + duration, 3)
        self.outages["longest_s"] = round(max(self.outages["longest_s"], duration), 3)
        log.warning("no frame for %.1f s after frame %s%s; recorded as an outage in frames.jsonl", duration, before[0],
                    " (still none when the run ended)" if ongoing else "")
        record = {"schema_version": RECORD_SCHEMA_VERSION, "source": self._source, "kind": "outage",
                  "start_t": round(before[1], 4), "end_t": round(after[1], 4),
                  "duration_s": round(duration, 3), "last_frame": before[0], "next_frame": after[0],
                  "start_time": before[2], "end_time": after[2], "ongoing": ongoing}
        if self.options.run_id is not None:
            record = {"run": self.options.run_id, **record}
        frames = self.sinks.get("frames")
        if frames is None:
            return 0
        try:
            frames.write(None, None, record)  # type: ignore[arg-type]  # a JsonlSink needs the record alone
        except StorageError as exc:
            self._refused("frames", exc, before[0])
            return 1
        return 0

    def _fits_video(self, video: Sink, frame_rgb: np.ndarray, record: dict) -> bool:
        """A still of another size than ``video.mp4``'s is left out of it (counted), not an error per still."""
        if "file" not in record:
            return True
        from edge.stills import fits_video

        if fits_video(video, frame_rgb):
            return True
        self.lost["video_size"] = self.lost.get("video_size", 0) + 1
        if self.lost["video_size"] == 1:
            log.warning("%s is %dx%d, not the video's size: stills of other sizes are left out of video.mp4 (their "
                        "annotated copies are in stills/; --segment-seconds keeps each size)", record["file"],
                        frame_rgb.shape[1], frame_rgb.shape[0])
        return False

    def _video_may_write(self, record: dict) -> bool:
        if self.video_stopped is not None:
            return False
        limit = self.options.min_free_mb * 1e6
        now = self.clock()
        if limit > 0 and now - self._space_checked >= _SPACE_CHECK_S:
            self._space_checked = now
            free = free_bytes(self.folder)
            if free is not None and free < limit and self.retention is not None:  # --retain: old video goes first
                if self.retention.make_room(lambda: (free_bytes(self.folder) or 0) >= limit):
                    free = free_bytes(self.folder)
            if free is not None and free < limit:
                self._stop_video(f"low disk space: {free / 1e6:.1f} MB free < min_free_mb {self.options.min_free_mb:g}")
                log.error("only %.1f MB free under %s (below min_free_mb %g): video stopped at frame %s to keep room "
                          "for frame records and events; they go on; this run will exit 1",
                          free / 1e6, self.folder, self.options.min_free_mb, record.get("frame"))
                return False
        return True

    def _refused(self, name: str, exc: StorageError, frame: Any) -> None:
        self.sink_errors += 1
        code = exc.errno_name
        self.storage_errors[code] = self.storage_errors.get(code, 0) + 1
        if name != "video":  # the video's cost is counted by the video sink (discarded frames)
            what = "snapshots" if exc.path is not None and exc.path.suffix == ".jpg" else name
            self.lost[what] = self.lost.get(what, 0) + 1
        words = _ERRNO_WORDS.get(code, f"write refused ({code})")
        first = self.storage_errors[code] == 1
        had_video = self.video_active
        if had_video:
            self._stop_video(f"{words} ({code}) at frame {frame}")
        if first:  # reported once per kind of failure, however many writes it refuses afterwards
            self._first_storage_error = self._first_storage_error or f"{words} ({code}) writing {name} at frame {frame}: {exc}"
            log.error("%s (%s) at frame %s: %s. %sFrames are still detected and events published; frame and event "
                      "records the disk refuses are counted, never half-written; this run will exit 1",
                      words, code, frame, exc, "Video stopped. " if had_video else "")

    def _stop_video(self, reason: str) -> None:
        self.video_stopped = reason
        try:
            self.sinks["video"].close()  # finish the open segment if the disk takes it, else delete it (frees space)
        except StorageError:
            pass
        except Exception:
            log.exception("closing the video after '%s' failed", reason)

    # ---- closing
    def close(self) -> None:
        """Close every sink (an outage still going on is recorded first); a sink that fails to close is logged and counted."""
        last, limit = self._last_seen, self.options.outage_s
        if last is not None and limit is not None and self.started is not None:
            now_t = self.clock() - self.started
            if now_t - last[1] > limit:
                self._outage(last, (None, now_t, utc_iso(time.time())), ongoing=True)
        for name, sink in self.sinks.items():
            try:
                sink.close()
            except StorageError as exc:
                self._refused(name, exc, "close")
            except Exception:
                self.sink_errors += 1
                log.exception("closing sink %s failed", name)

    def release_reserve(self) -> None:
        """Give back the space set aside for summary.json (call just before writing it)."""
        self._reserve.release()

    def summary(self) -> dict[str, Any]:
        frames, video = self.sinks.get("frames"), self.sinks.get("video")
        out: dict[str, Any] = {"run": self.options.run_id, "folder": str(self.folder)}
        if video is not None:
            v: dict[str, Any] = {"frames": video.frames, "stopped": self.video_stopped,
                                 "unrecorded_frames": self.lost.get("video", 0)}
            if hasattr(video, "segments"):
                v.update(segments=video.segments, segment_s=video.segment_s, discarded_frames=video.discarded,
                         timing=video.timing, left_out_early_frames=video.skipped)
                if self.retention is not None:
                    v["retain"] = {"limit": self.options.retain, "deleted_segments": self.retention.deleted,
                                   "deleted_bytes": self.retention.deleted_bytes}
            else:
                v["file"] = "video.mp4"
            if self.lost.get("video_size"):
                v["stills_of_other_sizes"] = self.lost["video_size"]  # left out of video.mp4; in stills/
            out["video"] = v
        if isinstance(frames, JsonlSink):
            out["frames_jsonl"] = {"lines": frames.lines, "lost": self.lost.get("frames", 0), "parts": frames.parts,
                                   "deleted_parts": frames.deleted_parts}
        if self.events is not None:
            out["events_jsonl"] = {"lines": self.events.lines, "lost": self.lost.get("events", 0),
                                   "snapshots_lost": self.lost.get("snapshots", 0)}
        if "stills" in self.sinks:
            out["stills"] = {"written": self.sinks["stills"].written, "which": self.options.stills, "folder": "stills"}
        out["outages"] = dict(self.outages)
        out["storage_errors"] = dict(self.storage_errors)
        out["first_storage_error"] = self._first_storage_error
        v = out.get("video") or {}
        out["complete"] = not (self.storage_errors or self.video_stopped or v.get("discarded_frames")
                               or any(n for k, n in self.lost.items() if k not in ("video", "video_size")))
        return out


def outcome(summary: Mapping[str, Any]) -> tuple[int, list[str]]:
    """The exit code of a run and the reasons for a 1 (see ``EXIT_CODES``).

    Example:
        >>> outcome({"ended_by": "source ended", "errors": 0, "sink_errors": 0})
        (0, [])
        >>> outcome({"ended_by": "stopped", "signal": "SIGTERM", "errors": 2, "sink_errors": 0})
        (1, ['2 frames failed'])
    """
    reasons: list[str] = []
    if summary.get("errors"):
        reasons.append(f"{summary['errors']} frames failed")
    rec = summary.get("recording") or {}
    other = (summary.get("sink_errors") or 0) - sum((rec.get("storage_errors") or {}).values())
    if other > 0:  # writes the disk refused are told below, by what they cost
        reasons.append(f"{other} sink writes failed")
    if summary.get("ended_by") == "source failed":
        reasons.append(f"the source failed: {summary.get('source_error')}")
    elif summary.get("ended_by") == "error":
        reasons.append("the run stopped on an error")
    start = len(reasons)
    if rec and not rec.get("complete", True):
        video = rec.get("video") or {}
        missing = video.get("unrecorded_frames", 0) + video.get("discarded_frames", 0)
        if video.get("stopped"):
            reasons.append(f"video stopped ({video['stopped']}); {missing} frames not in the video")
        elif missing:
            reasons.append(f"{missing} frames not in the video (a segment could not be closed complete)")
        for key in ("frames_jsonl", "events_jsonl"):
            if (rec.get(key) or {}).get("lost"):
                reasons.append(f"{rec[key]['lost']} {key.replace('_', '.')} records refused by the disk")
        if (rec.get("events_jsonl") or {}).get("snapshots_lost"):
            reasons.append(f"{rec['events_jsonl']['snapshots_lost']} event snapshots refused by the disk")
        if rec.get("first_storage_error") and len(reasons) == start:
            reasons.append(rec["first_storage_error"])
    if summary.get("summary_written") is False:
        reasons.append("summary.json could not be written")
    if reasons:
        return 1, reasons
    return _SIGNAL_EXIT.get(summary.get("signal"), 0), []


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON has no NaN: a bare ``NaN`` breaks strict parsers)."""
    if isinstance(obj, float) or isinstance(obj, np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj

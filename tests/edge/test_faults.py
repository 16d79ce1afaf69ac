"""Faults injected into the recording, in process: a disk that fills, a video writer that fails,
low free space, rotation, run folders, exit codes and JSON without NaN (issue 15, items 1, 2, 3, 6, 16)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import threading

import cv2
import numpy as np
import pytest

import edge.recording as recording
import edge.segments as segments
import edge.sinks as sinks_module
from edge.errors import ConfigError
from edge.events import HysteresisOptions
from edge.pipeline import RunOptions, _install_signal_handlers, report_after_stop, run
from edge.recording import RecordingOptions, RunFolder, json_safe, outcome
from edge.results import Boxes, FrameResult
from edge.segments import SegmentedVideoSink, mp4_complete
from edge.sinks import JsonlSink, StorageError
from edge.sources import FrameSource


class Clip(FrameSource):
    """``n`` frames of 48x64 (or ``sizes[i]``); a red ship is in view for frames in ``ship``."""

    def __init__(self, n=60, ship=range(20, 40), sizes=None):
        self.n, self.ship, self.sizes, self.fps = n, set(ship), sizes or {}, 10.0

    def _open(self):
        self.i = 0

    def _read(self):
        if self.i >= self.n:
            return None
        i, self.i = self.i, self.i + 1
        h, w = self.sizes.get(i, (48, 64))
        frame = np.full((h, w, 3), 40, np.uint8)
        frame[0, 0, 1] = i
        if i in self.ship:
            frame[10:30, 20:40] = (255, 0, 0)
        return frame


class Det:
    labels = ("ship",)

    def detect(self, frame):
        heat = (frame[..., 0] > 128).astype(np.float32)
        score = 0.95 if heat.any() else 0.05
        return FrameResult([score], self.labels, [score >= 0.5], heat, Boxes.empty(), {"infer": 0.1})


@pytest.fixture(autouse=True)
def no_wall_clock_segments(monkeypatch):
    """Segments close by frame count only, however slow this machine is today."""
    monkeypatch.setattr(segments, "_now", lambda: 0.0)


def _options(tmp_path, **recording_kw):
    rec = RecordingOptions(**{"run_id": "0001-test", "segment_s": 1.0, **recording_kw})
    return RunOptions(out_dir=tmp_path / "run", mode="all", hysteresis=HysteresisOptions(0.6, 0.4, 2), smoother_alpha=1.0,
                      event_label="ship", recording=rec)


def _lines(path):
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), f"{path.name} ends in half a line"
    return [json.loads(line) for line in raw.decode().splitlines()]


def _decoded_frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _storage_errors_logged(caplog):
    return [r for r in caplog.records if r.levelno >= logging.ERROR and "ENOSPC" in r.getMessage()]


# ---------------------------------------------------------------- a disk that fills under frames.jsonl


def test_enospc_on_frames_jsonl_cuts_the_half_line_reports_once_and_keeps_events(tmp_path, monkeypatch, caplog):
    real_write = sinks_module.os.write
    state = {"half": False}
    refused = set(range(25, 30))  # frames whose record the 'disk' refuses, half-way through the line

    def full_disk(fd, data):
        path = os.readlink(f"/proc/self/fd/{fd}")
        frame = json.loads(bytes(data).decode()).get("frame") if path.endswith("frames.jsonl") and not state["half"] else None
        if state["half"]:
            state["half"] = False
            raise OSError(errno.ENOSPC, "No space left on device")
        if frame in refused:
            state["half"] = True
            return real_write(fd, bytes(data)[: len(data) // 2])  # the disk takes half, then fills
        return real_write(fd, data)

    monkeypatch.setattr(sinks_module.os, "write", full_disk)
    opts = _options(tmp_path)
    with caplog.at_level(logging.INFO):
        summary = run(Det(), Clip(), opts)
    out = opts.out_dir

    records = _lines(out / "frames.jsonl")  # every line parses; the file ends with a newline
    assert [r["frame"] for r in records] == [i for i in range(60) if i not in refused]
    assert {r["run"] for r in records} == {"0001-test"}
    rec = summary["recording"]
    assert rec["frames_jsonl"]["lost"] == 5 and rec["storage_errors"] == {"ENOSPC": 5}
    assert len(_storage_errors_logged(caplog)) == 1, "reported once, not once per refused write"
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a full disk"
    # the policy: video stopped at the first refusal, detection and events went on
    assert rec["video"]["stopped"].startswith("disk full (ENOSPC) at frame 25")
    assert [(e["kind"], e["start_frame"], e["end_frame"]) for e in _lines(out / "events" / "events.jsonl")] == [
        ("start", 20, None), ("end", 20, 40)]
    closed = _lines(out / "video" / "segments.jsonl")
    assert closed and closed[-1]["last_frame"] < 25
    for seg in closed:
        assert _decoded_frames(out / "video" / seg["file"]) == seg["frames"]
    assert (summary["exit_code"], summary["sink_errors"]) == (1, 5)
    assert "5 frames.jsonl records refused by the disk" in summary["exit_reasons"]
    assert json.loads((out / "summary.json").read_text())["exit_code"] == 1


def test_a_torn_line_that_cannot_be_cut_off_is_followed_by_a_line_of_its_own(tmp_path, monkeypatch):
    real_write = sinks_module.os.write
    calls = {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] == 2:
            return real_write(fd, bytes(data)[:5])
        if calls["n"] == 3:
            raise OSError(errno.EIO, "Input/output error")
        return real_write(fd, data)

    def truncate(fd, size):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(sinks_module.os, "write", write)
    monkeypatch.setattr(sinks_module.os, "ftruncate", truncate)
    path = tmp_path / "f.jsonl"
    with JsonlSink(path) as sink:
        sink.write(None, None, {"frame": 0})
        with pytest.raises(StorageError) as info:
            sink.write(None, None, {"frame": 1})
        assert info.value.errno_name == "EIO"
        sink.write(None, None, {"frame": 2})
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"frame": 0} and json.loads(lines[-1]) == {"frame": 2} and len(lines) == 3


# ---------------------------------------------------------------- a video writer that fails


class _FailingWriter:
    """OpenCV's writer, failing from frame ``fail_at`` of the run like a writer on a full disk.

    ``report`` False: write() returns False (OpenCV 5); None: it returns None and the
    file is left without an index (OpenCV 4.x, which does not report), found when the segment closes.
    """

    count = 0

    def __init__(self, path, fps, size, fail_at, report):
        self.path, self.inner, self.fail_at, self.report = path, segments.cv2.VideoWriter(
            path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size), fail_at, report
        self.broken = False

    def isOpened(self):
        return self.inner.isOpened()

    def write(self, frame):
        _FailingWriter.count += 1
        if _FailingWriter.count > self.fail_at:
            self.broken = True
            return False if self.report is False else None
        self.inner.write(frame)
        return True

    def release(self):
        self.inner.release()
        if self.broken and self.report is None:
            with open(self.path, "r+b") as fh:
                fh.truncate(os.path.getsize(self.path) // 2)


@pytest.mark.parametrize("report", [False, None], ids=["opencv5-reports", "opencv4-silent"])
def test_a_failing_video_writer_keeps_the_closed_segments_and_stops_the_video_once(tmp_path, monkeypatch, caplog, report):
    _FailingWriter.count = 0
    monkeypatch.setattr(segments, "opencv_writer", lambda p, fps, size: _FailingWriter(p, fps, size, 33, report))
    monkeypatch.setattr(segments, "_no_space", lambda folder: True)
    opts = _options(tmp_path)
    with caplog.at_level(logging.INFO):
        summary = run(Det(), Clip(), opts)
    out = opts.out_dir
    closed = _lines(out / "video" / "segments.jsonl")
    assert [(s["file"], s["first_frame"], s["last_frame"]) for s in closed] == [
        ("000001.mp4", 0, 9), ("000002.mp4", 10, 19), ("000003.mp4", 20, 29)]
    for seg in closed:
        assert mp4_complete(out / "video" / seg["file"]) and _decoded_frames(out / "video" / seg["file"]) == 10
    assert sorted(p.name for p in (out / "video").glob("*")) == [".writing", "000001.mp4", "000002.mp4", "000003.mp4", "segments.jsonl"]
    assert not list((out / "video" / ".writing").iterdir()), "the failed segment is deleted"
    assert len(_storage_errors_logged(caplog)) == 1
    video = summary["recording"]["video"]
    assert video["frames"] == 30 and video["stopped"].startswith("disk full (ENOSPC)")
    assert video["discarded_frames"] + video["unrecorded_frames"] == 30
    assert [r["frame"] for r in _lines(out / "frames.jsonl")] == list(range(60)), "records go on without the video"
    assert summary["recording"]["events_jsonl"]["lines"] == 2
    assert summary["exit_code"] == 1


def test_low_free_space_stops_the_video_before_the_disk_is_full(tmp_path, monkeypatch, caplog):
    free = {"bytes": 10**9}
    monkeypatch.setattr(recording, "free_bytes", lambda folder: free["bytes"])

    def on_frame(item, result, record):
        if item.index == 14:
            free["bytes"] = 3 * 10**6

    monkeypatch.setattr(recording, "_SPACE_CHECK_S", 0.0)  # look at the free space on every frame
    opts = _options(tmp_path, min_free_mb=5)
    with caplog.at_level(logging.INFO):
        summary = run(Det(), Clip(), opts, on_frame=on_frame)
    video = summary["recording"]["video"]
    assert video["stopped"] == "low disk space: 3.0 MB free < min_free_mb 5"
    assert video["frames"] == 15 and video["unrecorded_frames"] == 45  # frames 0-14 in closed segments
    assert len([r for r in caplog.records if "min_free_mb" in r.getMessage()]) == 1
    assert len(_lines(opts.out_dir / "frames.jsonl")) == 60
    assert summary["exit_code"] == 1 and "video stopped (low disk space" in summary["exit_reasons"][0]


# ---------------------------------------------------------------- segments


def _frame(value, h=48, w=64):
    return np.full((h, w, 3), value, np.uint8)


def test_segments_close_by_frame_count_wall_time_and_size_and_only_closed_ones_are_visible(tmp_path):
    now = {"t": 0.0}
    folder = tmp_path / "video"
    sink = SegmentedVideoSink(folder, fps=10, segment_s=1.0, run_id="r1", clock=lambda: now["t"])
    for i in range(25):  # 10 frames per segment by count
        sink.write(_frame(i * 8), None, {"frame": i, "t": i / 10})
        visible = sorted(p.name for p in folder.glob("*.mp4"))
        assert visible == [f"{n:06d}.mp4" for n in range(1, (i + 1) // 10 + 1)]
    assert sink.open_frames == 5 and [p.name for p in (folder / ".writing").iterdir()] == ["000003.mp4"]
    now["t"] = 5.0  # a slow source: the next frame closes the segment by wall time
    sink.write(_frame(200), None, {"frame": 25, "t": 2.5})
    sink.write(_frame(10, 24, 32), None, {"frame": 26, "t": 2.6})  # a new size: a new segment
    sink.close()
    sink.close()
    closed = _lines(folder / "segments.jsonl")
    assert [(s["segment"], s["first_frame"], s["last_frame"], s["frames"], s["width"]) for s in closed] == [
        (1, 0, 9, 10, 64), (2, 10, 19, 10, 64), (3, 20, 25, 6, 64), (4, 26, 26, 1, 32)]
    assert {s["run"] for s in closed} == {"r1"}
    for seg in closed:
        assert _decoded_frames(folder / seg["file"]) == seg["frames"]
        assert seg["bytes"] == (folder / seg["file"]).stat().st_size
    assert not list((folder / ".writing").iterdir())


def test_mp4_complete_tells_a_whole_file_from_a_cut_one(tmp_path):
    sink = SegmentedVideoSink(tmp_path, fps=10, segment_s=1.0)
    for i in range(10):
        sink.write(_frame(i), None, {"frame": i, "t": i})
    sink.close()
    whole = (tmp_path / "000001.mp4").read_bytes()
    assert mp4_complete(tmp_path / "000001.mp4")
    for cut in (len(whole) - 1, len(whole) // 2, 12):
        (tmp_path / "cut.mp4").write_bytes(whole[:cut])
        assert not mp4_complete(tmp_path / "cut.mp4")


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"segment_s": 0}, {"segment_s": 4000}, {"fps": "15"}])
def test_segment_options_are_checked(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        SegmentedVideoSink(tmp_path, **kwargs)


# ---------------------------------------------------------------- frames.jsonl rotation


def test_frames_jsonl_rotates_by_size_and_keeps_the_newest_parts(tmp_path, caplog):
    path = tmp_path / "frames.jsonl"
    records = [{"frame": i, "pad": "x" * 40} for i in range(40)]  # 61-62 bytes a line: 4 lines a file, 10 files
    with caplog.at_level(logging.INFO), JsonlSink(path, max_bytes=300, keep=2) as sink:
        for r in records:
            sink.write(None, None, r)
    parts = sorted(tmp_path.glob("frames.*.jsonl"))
    assert [p.name for p in parts] == ["frames.000008.jsonl", "frames.000009.jsonl"] and sink.deleted_parts == 7
    assert all(p.stat().st_size <= 300 for p in [*parts, path])
    kept = [r for p in [*parts, path] for r in _lines(p)]
    assert kept == records[-12:], "the newest parts, then the current file, hold the last lines in order"
    assert len([r for r in caplog.records if "deleted frames.0000" in r.getMessage()]) == 7


def test_rotation_continues_numbering_after_existing_parts(tmp_path):
    (tmp_path / "frames.000004.jsonl").write_text('{"frame": -1}\n')
    with JsonlSink(tmp_path / "frames.jsonl", max_bytes=20) as sink:
        for i in range(3):
            sink.write(None, None, {"frame": i})
    assert sorted(p.name for p in tmp_path.glob("frames.0*.jsonl")) == [
        "frames.000004.jsonl", "frames.000005.jsonl", "frames.000006.jsonl"]


@pytest.mark.parametrize("kwargs", [{"max_bytes": 0}, {"keep": -1}, {"max_bytes": 1.5}])
def test_rotation_options_are_checked(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        JsonlSink(tmp_path / "f.jsonl", **kwargs)


# ---------------------------------------------------------------- run folders


def test_each_run_gets_a_new_folder_and_latest_points_at_it(tmp_path):
    first, second = RunFolder.create(tmp_path), RunFolder.create(tmp_path)
    assert first.run_id.startswith("0001-") and second.run_id.startswith("0002-") and first.path != second.path
    assert os.readlink(tmp_path / "latest") == second.run_id and (tmp_path / "latest").resolve() == second.path.resolve()
    (tmp_path / "0041-20990101T000000Z").mkdir()  # a later sequence number wins, whatever the clock says
    assert RunFolder.create(tmp_path).run_id.startswith("0042-")


def test_latest_is_a_file_naming_the_run_where_symlinks_are_refused(tmp_path, monkeypatch):
    def no_symlinks(*a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")  # FAT / exFAT SD card

    monkeypatch.setattr(recording.os, "symlink", no_symlinks)
    folder = RunFolder.create(tmp_path)
    assert (tmp_path / "latest").read_text() == folder.run_id + "\n"


def test_a_run_folder_on_an_unwritable_root_is_a_storage_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="cannot create a run folder"):
        RunFolder.create(tmp_path / "file" / "out")


# ---------------------------------------------------------------- exit codes, summaries, signals


@pytest.mark.parametrize(
    "summary, code",
    [
        ({"ended_by": "source ended", "errors": 0, "sink_errors": 0}, 0),
        ({"ended_by": "max_frames", "errors": 0, "sink_errors": 0}, 0),
        ({"ended_by": "stopped", "signal": "SIGINT", "errors": 0, "sink_errors": 0}, 130),
        ({"ended_by": "stopped", "signal": "SIGTERM", "errors": 0, "sink_errors": 0}, 143),
        ({"ended_by": "stopped", "signal": None, "errors": 0, "sink_errors": 0}, 0),
        ({"ended_by": "source ended", "errors": 3, "sink_errors": 0}, 1),
        ({"ended_by": "source ended", "errors": 0, "sink_errors": 2}, 1),
        ({"ended_by": "source failed", "source_error": "gone", "errors": 0, "sink_errors": 0}, 1),
        ({"ended_by": "error", "errors": 0, "sink_errors": 0}, 1),
        ({"ended_by": "stopped", "signal": "SIGTERM", "errors": 0, "sink_errors": 1,
          "recording": {"complete": False, "storage_errors": {"ENOSPC": 1}, "video": {"stopped": "disk full"}}}, 1),
        ({"ended_by": "source ended", "errors": 0, "sink_errors": 0, "summary_written": False}, 1),
    ],
)
def test_exit_codes(summary, code):
    got, reasons = outcome(summary)
    assert got == code and bool(reasons) == (code == 1)


def test_summary_json_has_null_where_a_figure_is_not_a_number(tmp_path, monkeypatch):
    from edge.stats import LatencyStats

    real = LatencyStats.summary
    monkeypatch.setattr(LatencyStats, "summary", lambda self, digits=3: {**real(self, digits), "nan_stage": {"p50": float("nan"), "p95": float("inf")}})
    opts = _options(tmp_path)
    summary = run(Det(), Clip(n=5), opts)

    def refuse(constant):
        raise ValueError(f"bare {constant} in summary.json")

    on_disk = json.loads((opts.out_dir / "summary.json").read_text(), parse_constant=refuse)
    assert on_disk["p50_ms"]["nan_stage"] is None and on_disk["p95_ms"]["nan_stage"] is None
    assert summary["p50_ms"]["nan_stage"] is None
    assert json_safe({"a": [np.float32("nan"), 1.5, (float("-inf"),)]}) == {"a": [None, 1.5, [None]]}


def test_space_is_set_aside_for_summary_json_and_given_back_when_everything_else_is_refused(tmp_path, monkeypatch):
    """(That the reserve makes room on a really full disk is shown on a tmpfs in test_recording.py.)"""
    opts = _options(tmp_path)
    real_write = sinks_module.os.write

    def refuse(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sinks_module.os, "write", refuse)
    seen = {}

    def on_frame(item, result, record):
        seen["reserve"] = (opts.out_dir / ".space-reserve").stat().st_size

    run(Det(), Clip(n=8), opts, on_frame=on_frame)
    monkeypatch.setattr(sinks_module.os, "write", real_write)
    assert seen["reserve"] == 64 * 1024 and not (opts.out_dir / ".space-reserve").exists()
    on_disk = json.loads((opts.out_dir / "summary.json").read_text())
    assert on_disk["recording"]["frames_jsonl"]["lost"] == 8 and on_disk["exit_code"] == 1
    assert (opts.out_dir / "frames.jsonl").read_bytes() == b""


def test_a_signal_during_the_flush_does_not_interrupt_it():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed on the main thread only")
    stop, state = threading.Event(), {"signal": None, "flushing": False}
    restore = _install_signal_handlers(stop, state)
    try:
        signal.raise_signal(signal.SIGTERM)
        assert stop.is_set() and state["signal"] == "SIGTERM"
        state["flushing"] = True
        signal.raise_signal(signal.SIGINT)  # would raise KeyboardInterrupt before the flush began
        signal.raise_signal(signal.SIGTERM)
    finally:
        restore()
    assert state["signal"] == "SIGTERM"


def test_after_a_stop_a_repeated_signal_waits_for_the_report():
    # edgecam run: a second Ctrl-C after the run restored its handlers must not cut the line saying how it ended
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed on the main thread only")
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stop = threading.Event()
    with report_after_stop(stop):
        with pytest.raises(KeyboardInterrupt):  # no run stopped yet: Ctrl-C interrupts as it always does
            signal.raise_signal(signal.SIGINT)
        stop.set()
        signal.raise_signal(signal.SIGINT)  # ignored (logged): the report comes first
        signal.raise_signal(signal.SIGTERM)
        reported = True
    assert reported and {sig: signal.getsignal(sig) for sig in before} == before


@pytest.mark.parametrize(
    "kwargs",
    [{"segment_s": 0}, {"segment_s": -1}, {"min_free_mb": -1}, {"jsonl_max_mb": 0}, {"jsonl_keep": -1},
     {"run_id": "../x"}, {"run_id": ""}, {"segment_s": float("nan")}],
)
def test_recording_options_are_checked(kwargs):
    with pytest.raises(ConfigError, match="RecordingOptions"):
        RecordingOptions(**kwargs)


def test_recording_options_from_dict_in_run_options():
    opts = RunOptions.from_dict({"out_dir": "x", "recording": {"segment_s": 5, "jsonl_max_mb": 50, "jsonl_keep": 3}})
    assert (opts.recording.segment_s, opts.recording.jsonl_max_mb, opts.recording.jsonl_keep) == (5, 50, 3)
    with pytest.raises(ConfigError, match="unknown"):
        RunOptions.from_dict({"recording": {"keep_forever": 3}})

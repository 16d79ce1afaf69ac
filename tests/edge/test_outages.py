"""A lost camera shows as one (issue 15, item 7): fps measured over a window against the clock, an outage
written to frames.jsonl with its start, end and duration, an open event closed as interrupted, and the live
view's stats.json saying how long no frame has come."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.events import EventTracker, HysteresisOptions
from edge.live import LiveServer
from edge.pipeline import RunOptions, run
from edge.recording import Recorder, RecordingOptions
from edge.sources import FrameSource
from edge.stats import RateWindow

from test_pipeline import FakeDetector


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fps_is_the_measured_rate_and_falls_to_zero_without_frames():
    rate = RateWindow(window_s=5.0)
    for i in range(147):  # 14.6 fps for 10 s, as measured on the vessel
        rate.add(i / 14.6)
    last = 146 / 14.6
    assert rate.per_second(last) == pytest.approx(14.6, abs=0.3)
    assert rate.per_second(last + 2.5) == pytest.approx(14.6 / 2, abs=0.5)  # half the window is silent
    assert rate.per_second(last + 31.0) == 0.0
    with pytest.raises(ConfigError, match="window_s"):
        RateWindow(window_s=0)


def _frame_record(i, t, **extra):
    return {"frame": i, "t": t, "time": f"2026-01-01T00:00:{t:06.3f}Z", "scores": [0.1], **extra}


def test_a_gap_in_capture_times_becomes_an_outage_record_between_the_frames(tmp_path):
    rec = Recorder(tmp_path, RecordingOptions(run_id="r1", outage_s=5.0))
    rec.open_records()
    frame = np.zeros((4, 4, 3), np.uint8)
    times = [0.0, 0.07, 0.14, 31.84, 31.91]  # a 31.7 s outage between frames 2 and 3
    for i, t in enumerate(times):
        rec.write(frame, None, _frame_record(i, t, schema_version=1, source="cam-1"))
    rec.close()
    lines = _lines(tmp_path / "frames.jsonl")
    assert [line.get("frame", line.get("kind")) for line in lines] == [0, 1, 2, "outage", 3, 4]
    outage = lines[3]
    assert outage["run"] == "r1" and outage["last_frame"] == 2 and outage["next_frame"] == 3
    assert outage["start_t"] == 0.14 and outage["end_t"] == 31.84 and outage["duration_s"] == pytest.approx(31.7)
    assert outage["start_time"].endswith("00.140Z") and outage["ongoing"] is False
    assert outage["schema_version"] == 1 and outage["source"] == "cam-1"  # the frame records' own
    assert rec.summary()["outages"] == {"count": 1, "seconds": pytest.approx(31.7), "longest_s": pytest.approx(31.7)}


def test_a_file_is_read_at_the_model_s_pace_and_has_no_outages(tmp_path):
    rec = Recorder(tmp_path, RecordingOptions(outage_s=1.0))
    rec.open_records()
    for i, t in enumerate([0.0, 3.0, 6.0]):  # a slow model on a video file: media_ms marks a file's frames
        rec.write(np.zeros((4, 4, 3), np.uint8), None, _frame_record(i, t, media_ms=40.0 * i))
    rec.close()
    assert [line["frame"] for line in _lines(tmp_path / "frames.jsonl")] == [0, 1, 2]


def test_an_outage_still_going_on_at_the_end_is_recorded_as_ongoing(tmp_path):
    now = [100.0]
    rec = Recorder(tmp_path, RecordingOptions(outage_s=5.0), clock=lambda: now[0], started=100.0)
    rec.open_records()
    rec.write(np.zeros((4, 4, 3), np.uint8), None, _frame_record(0, 0.5))
    now[0] = 140.0  # stopped 39.5 s after the last frame
    rec.close()
    outage = _lines(tmp_path / "frames.jsonl")[-1]
    assert outage["kind"] == "outage" and outage["ongoing"] is True and outage["next_frame"] is None
    assert outage["duration_s"] == pytest.approx(39.5) and outage["end_t"] == pytest.approx(40.0)


def test_the_tracker_interrupts_an_open_event_only_after_the_timeout():
    tracker = EventTracker(HysteresisOptions(0.6, 0.4, 1, interrupt_s=10.0), smoother_alpha=1.0)
    assert tracker.update(0, 0.0, 0.9).kind.value == "start"
    tracker.update(1, 0.5, 0.9)
    assert tracker.interrupt(10.0) is None  # 9.5 s: not yet
    end = tracker.interrupt(11.0)
    assert end.to_record() == {**end.event.to_record(), "kind": "end", "interrupted": True, "no_frame_s": 10.5}
    assert end.event.end_frame == 1 and tracker.active is None and tracker.interrupt(50.0) is None
    with pytest.raises(ConfigError, match="interrupt_s"):
        HysteresisOptions(interrupt_s=0)


class StallingCamera(FrameSource):
    """A live camera: a red ship in frames 0-9, then no frame for ``stall_s``, then open sea."""

    is_live = True

    def __init__(self, stall_s=1.2):
        self.stall_s, self.fps = stall_s, 20.0

    def _open(self):
        self.i = 0

    def _read(self):
        i, self.i = self.i, self.i + 1
        if i == 10:
            time.sleep(self.stall_s)
        time.sleep(0.01)
        frame = np.full((72, 96, 3), 40, np.uint8)
        frame[0, 0, 1] = i % 256
        if i < 10:
            frame[20:40, 30:50] = (255, 0, 0)
        return frame


def test_a_stalled_camera_closes_the_event_as_interrupted_and_records_the_outage(tmp_path):
    opts = RunOptions(out_dir=tmp_path / "run", mode="all", smoother_alpha=1.0, event_label="ship", max_frames=16,
                      hysteresis=HysteresisOptions(0.6, 0.4, 3, interrupt_s=0.5), write_video=False,
                      recording=RecordingOptions(outage_s=0.5))
    summary = run(FakeDetector(), StallingCamera(stall_s=1.2), opts)
    events = _lines(tmp_path / "run" / "events" / "events.jsonl")
    assert [(e["kind"], e.get("interrupted")) for e in events] == [("start", None), ("end", True)]
    assert events[1]["end_frame"] == 9 and 0.5 <= events[1]["no_frame_s"] < 1.2
    frames = _lines(tmp_path / "run" / "frames.jsonl")
    outages = [line for line in frames if line.get("kind") == "outage"]
    assert len(outages) == 1 and outages[0]["last_frame"] == 9 and outages[0]["next_frame"] == 10
    assert 1.1 <= outages[0]["duration_s"] < 3.0
    assert summary["recording"]["outages"]["count"] == 1 and summary["events"] == 1


def test_stats_json_says_how_long_no_frame_has_come_and_fps_falls(tmp_path):
    with LiveServer(port=0, stale_s=0.3, fps_window_s=0.5) as live:
        for _ in range(5):
            live.publish(np.zeros((8, 8, 3), np.uint8), {"fps": 25.0, "frames": 3})
            time.sleep(0.02)
        fresh = json.loads(urllib.request.urlopen(live.url + "stats.json", timeout=5).read())
        assert fresh["stale"] is False and fresh["no_frame"] is None and fresh["fps"] > 10 and fresh["frames"] == 3
        time.sleep(0.8)
        stale = json.loads(urllib.request.urlopen(live.url + "stats.json", timeout=5).read())
    assert stale["stale"] is True and stale["age_s"] >= 0.8 and stale["fps"] == 0.0
    assert stale["no_frame"] == f"no frame for {stale['age_s']:.0f} s"


def test_a_loopback_mjpeg_camera_killed_and_restarted_is_an_outage_and_a_reconnect(tmp_path):
    """The real path: FFmpeg reading an HTTP MJPEG stream (served by edgecam's own live view) that goes away for 2.5 s."""
    from edge.capture import BackoffOptions
    from edge.sources import StreamSource

    phase = {"ship": True}
    stop_run = threading.Event()

    def camera(port, seconds):
        with LiveServer(port=port) as cam:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                frame = np.full((72, 96, 3), 40, np.uint8)
                if phase["ship"]:
                    frame[20:40, 30:50] = (255, 0, 0)
                cam.publish(frame)
                time.sleep(1 / 15)
            return cam.port

    first = LiveServer(port=0)
    port = first.port
    first.close()  # a free port, taken again by the camera below

    def script():
        camera(port, 1.2)  # a ship in view
        time.sleep(2.5)  # the camera is gone: port closed
        phase["ship"] = False
        camera(port, 1.5)  # back, open sea
        stop_run.set()

    threading.Thread(target=script, daemon=True).start()
    time.sleep(0.3)
    opts = RunOptions(out_dir=tmp_path / "run", mode="latest", smoother_alpha=1.0, event_label="ship", write_video=False,
                      hysteresis=HysteresisOptions(0.6, 0.4, 3, interrupt_s=1.2), reconnect=BackoffOptions(initial=0.2, max=0.4),
                      recording=RecordingOptions(outage_s=1.0))
    summary = run(FakeDetector(labels=("ship",)), StreamSource(f"http://127.0.0.1:{port}/stream.mjpg", timeout_s=1.0), opts,
                  stop_event=stop_run)
    frames = _lines(tmp_path / "run" / "frames.jsonl")
    outages = [line for line in frames if line.get("kind") == "outage"]
    assert len(outages) == 1 and 2.0 <= outages[0]["duration_s"] <= 5.5, outages
    after = [line for line in frames if "frame" in line and line["t"] > outages[0]["end_t"] - 1e-6]
    assert len(after) >= 5, "frames came again after the restart"
    events = _lines(tmp_path / "run" / "events" / "events.jsonl")
    assert [(e["kind"], e.get("interrupted")) for e in events][:2] == [("start", None), ("end", True)]
    assert summary["reconnects"] >= 1 and summary["recording"]["outages"]["count"] == 1 and summary["exit_code"] == 0


def test_an_outage_record_the_disk_refuses_is_counted_like_any_record(tmp_path, monkeypatch):
    import errno

    from edge import sinks as sinks_module

    real_append = sinks_module._AppendFile.append

    def append(self, data):
        if b'"outage"' in data:
            raise sinks_module.StorageError("no space", errno.ENOSPC, self.path)
        real_append(self, data)

    monkeypatch.setattr(sinks_module._AppendFile, "append", append)
    rec = Recorder(tmp_path, RecordingOptions(outage_s=5.0))
    rec.open_records()
    assert [rec.write(np.zeros((4, 4, 3), np.uint8), None, _frame_record(i, t)) for i, t in enumerate([0.0, 40.0])] == [0, 1]
    rec.close()
    summary = rec.summary()
    assert [line["frame"] for line in _lines(tmp_path / "frames.jsonl")] == [0, 1]  # the frames themselves are kept
    assert summary["storage_errors"] == {"ENOSPC": 1} and summary["frames_jsonl"]["lost"] == 1
    assert summary["outages"]["count"] == 1 and summary["complete"] is False


@pytest.mark.parametrize("live", [False, True], ids=["file", "live"])
def test_a_slow_model_is_not_a_lost_camera(tmp_path, live):
    """Frames wait in the queue while the model is slow: the capture reads nothing new, but nothing is lost."""
    from test_pipeline import ShipClip

    class Camera(ShipClip):  # a live camera in 'all' mode: it waits while the queue is full
        is_live = live

    opts = RunOptions(out_dir=tmp_path / "run", mode="all", smoother_alpha=1.0, event_label="ship", queue_size=1,
                      hysteresis=HysteresisOptions(0.6, 0.4, 2, interrupt_s=0.3), write_video=False, max_frames=4)
    summary = run(FakeDetector(delay_s=1.0), Camera(n=100 if live else 4, ship=range(100)), opts)  # 1 s a frame > interrupt_s
    events = _lines(tmp_path / "run" / "events" / "events.jsonl")
    assert [(e["kind"], e.get("interrupted")) for e in events] == [("start", None), ("end", None)]
    assert events[1]["end_frame"] == 3 and summary["frames"] == 4

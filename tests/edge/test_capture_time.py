"""Times that mean something: each captured frame carries the wall-clock time it was captured and,
where the source has one, its own media timestamp; event lines carry the time of their frame."""

from __future__ import annotations

import datetime as dt
import json
import time

import numpy as np
import pytest

from edge.capture import CaptureMode, ThreadedCapture
from edge.errors import ConfigError
from edge.results import FrameResult
from edge.sinks import EventSink, utc_iso
from edge.sources import FrameSource, SyntheticSource, VideoFileSource

cv2 = pytest.importorskip("cv2")


def write_video(path, n: int, fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()


def captured(source: FrameSource) -> list:
    out = []
    with ThreadedCapture(source, CaptureMode.ALL) as cap:
        while (item := cap.get(timeout=5.0)) is not None:
            out.append(item)
    return out


def test_a_video_file_gives_its_frame_times_and_the_wall_clock_of_capture(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, n=12, fps=10.0)
    before = time.time()
    items = captured(VideoFileSource(path))
    after = time.time()
    assert [i.index for i in items] == list(range(12))
    assert [i.media_ms for i in items] == pytest.approx([100.0 * i for i in range(12)], abs=1.0)
    walls = [i.t_wall for i in items]
    assert before <= walls[0] and walls[-1] <= after and walls == sorted(walls)
    # the wall clock and the monotonic clock were read at the same moment
    spans = np.diff(walls) - np.diff([i.t_monotonic for i in items])
    assert np.all(np.abs(spans) < 0.01)


def test_a_synthetic_clip_gives_its_own_frame_times(tmp_path):
    items = captured(SyntheticSource(seed=1, n_frames=5, fps=20.0))
    assert [i.media_ms for i in items] == [0.0, 50.0, 100.0, 150.0, 200.0]
    assert all(i.t_wall is not None for i in items)


class LiveSource(FrameSource):
    """A camera that never ends; a stray media_ms on it must not pass for a camera's media time."""

    is_live = True
    media_ms = 123.0

    def _open(self) -> None:
        pass

    def _read(self):
        return np.zeros((8, 8, 3), np.uint8)


def test_a_live_source_has_no_media_time_its_capture_time_stands():
    cap = ThreadedCapture(LiveSource(), CaptureMode.ALL)
    cap.start()
    items = [cap.get(timeout=2.0) for _ in range(3)]
    cap.close()
    assert all(i is not None and i.media_ms is None and i.t_wall is not None for i in items)


@pytest.mark.parametrize(("epoch", "expected"), [
    (0.0, "1970-01-01T00:00:00.000Z"),
    (1_800_000_000.25, "2027-01-15T08:00:00.250Z"),
    (1_764_269_999.9994, "2025-11-27T18:59:59.999Z"),
])
def test_utc_iso_writes_iso_8601_utc_to_the_millisecond(epoch, expected):
    text = utc_iso(epoch)
    assert text == expected
    back = dt.datetime.fromisoformat(text)
    assert back.tzinfo == dt.timezone.utc and abs(back.timestamp() - epoch) < 0.001


@pytest.mark.parametrize("bad", [None, "0", True, float("nan")])
def test_utc_iso_refuses_what_is_not_a_time(bad):
    with pytest.raises(ConfigError, match="expected seconds since the epoch"):
        utc_iso(bad)


def test_an_event_line_takes_the_time_of_its_frame(tmp_path):
    result = FrameResult.__new__(FrameResult)  # EventSink reads only the record
    frame = np.zeros((8, 8, 3), np.uint8)
    stamp = utc_iso(1_800_000_000.0)
    with EventSink(tmp_path, run_id="r1") as sink:
        sink.write(frame, result, {"frame": 3, "time": stamp, "event": {"kind": "start", "id": 1, "frame": 3}})
        sink.write(frame, result, {"frame": 9, "time": "x", "event": {"kind": "end", "id": 1, "time": "kept"}})
        sink.write(frame, result, {"frame": 10, "time": stamp})  # no event: nothing written
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["time"]) for e in lines] == [("start", stamp), ("end", "kept")]


def test_frames_jsonl_carries_capture_time_and_media_position(tmp_path):
    """A 10 fps clip through edgecam's run loop: every record has an ISO UTC time in the run and its media time."""
    cv2 = pytest.importorskip("cv2")
    from edge.pipeline import RunOptions, run
    from edge.sources import open_source

    clip = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(6):
        w.write(np.full((48, 64, 3), 20 * i, np.uint8))
    w.release()

    class Fixed:
        labels = ("ship",)

        def detect_prepared(self, prepared):  # pragma: no cover - prepare is None here
            raise AssertionError

        def detect(self, frame):
            from edge.results import Boxes, FrameResult

            return FrameResult(np.array([0.1], np.float32), ("ship",), np.array([False]), np.zeros(frame.shape[:2], np.float32),
                               Boxes.empty(), {})

    t0 = time.time()
    run(Fixed(), open_source(str(clip)), RunOptions(out_dir=tmp_path / "out", write_video=False, mode=CaptureMode.ALL))
    t1 = time.time()
    lines = [json.loads(x) for x in (tmp_path / "out" / "frames.jsonl").read_text().splitlines()]
    assert len(lines) == 6
    for i, rec in enumerate(lines):
        when = dt.datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).timestamp()
        assert t0 - 0.01 <= when <= t1 + 0.01
        assert rec["media_ms"] == pytest.approx(100.0 * i, abs=1.0)

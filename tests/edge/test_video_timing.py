"""The video follows the capture clock (issue 15, item 13): a 15 fps camera recorded at a claimed 25 fps lasts as
long as the wall time it covers, within a frame; a lost camera's gap ends a segment instead of being squeezed out."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.segments import SegmentedVideoSink


def _frame(i):
    frame = np.full((48, 64, 3), 30, np.uint8)
    frame[: 1 + i % 40, :8] = (255, 255, 255)  # changes each frame, so the encoder keeps every one
    return frame


def _write(sink, times):
    for i, t in enumerate(times):
        sink.write(_frame(i), None, {"frame": i, "t": t})
    sink.close()


def _video(path):
    cap = cv2.VideoCapture(str(path))
    fps, n = cap.get(cv2.CAP_PROP_FPS), 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n, fps


def _index(folder):
    return [json.loads(line) for line in (folder / "segments.jsonl").read_text().splitlines()]


def test_a_15_fps_camera_at_a_claimed_25_fps_lasts_its_wall_time(tmp_path):
    rng = np.random.default_rng(0)
    times = np.cumsum(np.r_[0.0, rng.uniform(0.04, 0.093, 149)])  # 15 fps on average, with jitter
    sink = SegmentedVideoSink(tmp_path, fps=25.0, segment_s=60.0, timing="capture")
    _write(sink, list(times))
    n, fps = _video(tmp_path / "000001.mp4")
    wall = times[-1] - times[0] + 1 / 25  # the last frame is shown for one video frame
    assert fps == pytest.approx(25.0) and abs(n / 25.0 - wall) <= 1 / 25 + 1e-9
    (line,) = _index(tmp_path)
    assert line["frames"] == 150 and line["video_frames"] == n and line["duration_s"] == pytest.approx(n / 25)
    assert line["gap_before_s"] is None and sink.skipped == 0


def test_a_gap_ends_the_segment_and_the_next_says_how_long_it_was(tmp_path):
    times = [i / 15 for i in range(60)] + [31.7 + 59 / 15 + i / 15 for i in range(30)]
    sink = SegmentedVideoSink(tmp_path, fps=15.0, segment_s=60.0, timing="capture", gap_s=2.0)
    _write(sink, times)
    first, second = _index(tmp_path)
    assert (first["frames"], second["frames"]) == (60, 30)
    assert first["gap_before_s"] is None and second["gap_before_s"] == pytest.approx(31.7, abs=1e-3)
    assert _video(tmp_path / "000001.mp4")[0] == 60 and _video(tmp_path / "000002.mp4")[0] == 30
    assert second["t_first"] - first["t_last"] == pytest.approx(second["gap_before_s"], abs=1e-3)


def test_frames_faster_than_the_video_rate_are_left_out_not_slowed_down(tmp_path):
    times = [i / 30 for i in range(90)]  # a 30 fps camera into a 15 fps video: 3 s either way
    sink = SegmentedVideoSink(tmp_path, fps=15.0, segment_s=60.0, timing="capture")
    _write(sink, times)
    n, _ = _video(tmp_path / "000001.mp4")
    assert abs(n / 15 - (89 / 30 + 1 / 15)) <= 1 / 15 and sink.skipped == 90 - n
    assert _index(tmp_path)[0]["frames"] == 90  # every frame is still in the segment's count (and in frames.jsonl)


def test_a_file_follows_its_own_clock_and_records_without_one_are_one_frame_each(tmp_path):
    sink = SegmentedVideoSink(tmp_path / "a", fps=10.0, segment_s=60.0, timing="media")
    for i in range(12):  # read at once (t ~ 0), every 2nd frame of a 10 fps file (stride 2)
        sink.write(_frame(i), None, {"frame": i, "t": 0.001 * i, "media_ms": 200.0 * i})
    sink.close()
    assert _video(tmp_path / "a" / "000001.mp4")[0] == 23  # 2.2 s of the file's time, at 10 fps
    sink = SegmentedVideoSink(tmp_path / "b", fps=10.0, segment_s=60.0, timing="capture")
    for i in range(12):
        sink.write(_frame(i), None, {"frame": i})
    sink.close()
    assert _video(tmp_path / "b" / "000001.mp4")[0] == 12


def test_a_run_says_how_its_video_was_timed_and_what_it_left_out(tmp_path):
    from edge.pipeline import RunOptions, run
    from edge.recording import RecordingOptions

    from test_pipeline import FakeDetector, ShipClip

    class Clip(ShipClip):  # a file of 10 fps with its own clock
        def _read(self):
            frame = super()._read()
            self.media_ms = None if frame is None else 100.0 * (self.i - 1)
            return frame

    opts = RunOptions(out_dir=tmp_path / "run", mode="all", video_fps=5.0, recording=RecordingOptions(segment_s=60.0))
    summary = run(FakeDetector(), Clip(n=40), opts)
    video = summary["recording"]["video"]
    # frames at 0.0-3.9 s of the file into 5 fps: video frames 0-20, one for every other frame after the first
    assert video["timing"] == "media" and video["left_out_early_frames"] == 19
    assert _video(tmp_path / "run" / "video" / "000001.mp4")[0] == 21


def test_one_video_file_of_a_live_source_says_it_keeps_the_nominal_rate(tmp_path, caplog):
    # --segment-seconds 0: one video.mp4 at one frame rate cannot follow the camera's clock; the run says so once
    from edge.recording import Recorder, RecordingOptions

    for live, warned in ((True, 1), (False, 0)):
        rec = Recorder(tmp_path / str(live), RecordingOptions(run_id="r1", segment_s=None))
        caplog.clear()
        with caplog.at_level("WARNING", logger="edge.recording"):
            rec.open_video(15.0, live=live)
        rec.close()
        said = [r.getMessage() for r in caplog.records if "--segment-seconds 0" in r.getMessage()]
        assert len(said) == warned and (not said or "written at 15 fps" in said[0])

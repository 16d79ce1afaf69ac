"""The one frame loop (edge.loop.FrameLoop) that edgecam run and the bench both drive."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from edge.capture import CaptureMode, ThreadedCapture
from edge.errors import EdgecamError
from edge.loop import FrameDone, FrameLoop, Job, JobKind
from edge.pipeline import run
from edge.sinks import Sink
from tests.edge.test_pipeline import FakeDetector, ShipClip, SplittingDetector, _lines, _options


def _capture(n=12, prepare=None):
    return ThreadedCapture(ShipClip(n=n, ship=range(10, n)), CaptureMode.ALL, queue_size=4, prepare=prepare)


def test_a_job_is_frozen_and_its_kind_an_enum():
    job = Job(item=None, kind=JobKind.ERROR, payload=ValueError("x"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.kind = JobKind.RESULT
    assert [k.value for k in JobKind] == ["inference", "result", "error"]


def test_a_splitting_detector_is_finished_on_the_output_thread_in_frame_order():
    det, done = SplittingDetector(), []
    with FrameLoop(det, _capture(12, det.prepare), done.append) as loop:
        assert loop.drive(threading.Event()) == "source ended"
        loop.wait_handled(12, 10.0)
    assert [d.item.index for d in done] == list(range(12))
    assert all(isinstance(d, FrameDone) and d.detect_ms >= 0 for d in done)
    assert det.finish_threads == {"output"} and threading.current_thread().name in det.infer_threads
    # frames 10 and 11 show the ship: the finished results are the detector's, not a copy of one
    assert [d.result.positive[0] for d in done] == [False] * 10 + [True] * 2


def test_max_frames_and_stop_end_the_drive():
    with FrameLoop(FakeDetector(), _capture(30), lambda d: None) as loop:
        assert loop.drive(threading.Event(), max_frames=5) == "max_frames"
        assert loop.submitted == 5
    stop = threading.Event()
    stop.set()
    with FrameLoop(FakeDetector(), _capture(30), lambda d: None) as loop:
        assert loop.drive(stop) == "stopped" and loop.submitted == 0


def test_a_failed_frame_goes_to_on_error_in_order_and_the_loop_goes_on():
    seen: list[tuple[str, int]] = []
    det = SplittingDetector(fail_finish_on={3}, fail_on={5})
    loop = FrameLoop(det, _capture(8, det.prepare), lambda d: seen.append(("ok", d.item.index)),
                     on_error=lambda item, exc: seen.append((type(exc).__name__, item.index)))
    with loop:
        loop.drive(threading.Event())
        loop.wait_handled(8, 10.0)
    assert seen == [("ok", 0), ("ok", 1), ("ok", 2), ("ValueError", 3), ("ok", 4), ("RuntimeError", 5),
                    ("ok", 6), ("ok", 7)]


def test_without_on_error_a_failure_stops_the_stage_and_a_waiter_hears_it_at_once():
    det = SplittingDetector(fail_finish_on={0})
    loop = FrameLoop(det, _capture(4, det.prepare), lambda d: None)
    loop.start()
    try:
        assert loop.step(5.0)
        with pytest.raises(EdgecamError, match="CAM failed on frame 0"):
            loop.wait_handled(1, 10.0)
    finally:
        with pytest.raises(EdgecamError):
            loop.close()


def test_unthreaded_loop_finishes_each_frame_before_submit_returns():
    done = []
    with FrameLoop(FakeDetector(), _capture(3), done.append, threaded=False) as loop:
        assert loop.step(5.0) and len(done) == 1 and loop.output is None


class CountingSink(Sink):
    """Keeps what it was given, to show run() hands a sink typed records."""

    name = "counting"

    def __init__(self):
        self.records = []

    def _write(self, frame_rgb, result, record):
        self.records.append(record)


class InvertingAnnotator:
    def annotate(self, frame, result):
        return 255 - frame


def test_run_takes_extra_sinks_and_an_annotator(tmp_path):
    sink = CountingSink()
    shown = []
    opts = _options(tmp_path, write_video=False)
    run(FakeDetector(), ShipClip(n=20), opts, sinks=[sink],
        annotator=InvertingAnnotator(), on_frame=lambda item, result, record: shown.append(record))
    assert [r.frame for r in sink.records] == list(range(20)) and sink._closed
    # the JSON line is the record's dict, and on_frame gets the same dict
    assert _lines(opts.out_dir / "frames.jsonl") == [r.to_dict() for r in sink.records] == shown
    start = next(r for r in sink.records if r.event)
    assert start.event["kind"] == "start"
    snapshot = opts.out_dir / "events" / f"event_{start.event['id']:04d}.jpg"
    import cv2

    # the snapshot was drawn by the given annotator: background 40 inverted is about 215
    assert abs(float(np.median(cv2.imread(str(snapshot)))) - 215) < 3


def test_the_bench_drives_the_same_frame_loop_as_run(monkeypatch):
    """One loop: the bench's pipeline numbers come from edge.loop.FrameLoop, not a copy of it."""
    from pathlib import Path

    from edge import bench as B
    from edge import loop as L
    from tests.edge.test_bench import FakeClock, FakeTarget, frames

    made = []

    class Watched(L.FrameLoop):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            made.append(self)

    monkeypatch.setattr(B, "FrameLoop", Watched)
    clock = FakeClock()
    report = B.bench([Path("m.json")], frames=4, source=frames(2), clock=clock, warmup=0,
                     opener=lambda p, t: FakeTarget(clock, [1.0] * 4, [3.0] * 5))
    (loop,) = made
    assert loop.submitted == 4 and loop.handled == 4 and report.artifacts[0].pipeline.n == 4
    assert report.artifacts[0].pipeline.p50_ms == pytest.approx(3.0)

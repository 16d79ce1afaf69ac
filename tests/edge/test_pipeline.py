"""The frame loop end to end with a fake detector, a clean stop on SIGTERM, and latency stats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.boxes import boxes_from_heatmap
from edge.detector import DetectorOptions
from edge.errors import ConfigError
from edge.events import HysteresisOptions
from edge.pipeline import RunOptions, run
from edge.results import Boxes, FrameResult
from edge.sources import CaptureMode, FrameSource
from edge.stats import LatencyStats
from edge.tiling import TileSpec

REPO = Path(__file__).resolve().parents[2]


class ShipClip(FrameSource):
    """``n`` frames; a red 'ship' (rows 20-40, cols 30-50) is in view for frames in ``ship``."""

    def __init__(self, n=40, ship=range(10, 30), size=(72, 96), corrupt=()):
        self.n, self.ship, self.size, self.corrupt = n, set(ship), size, set(corrupt)
        self.fps = 10.0

    def _open(self):
        self.i = 0

    def _read(self):
        if self.i >= self.n:
            return None
        i, self.i = self.i, self.i + 1
        if i in self.corrupt:
            return np.zeros(self.size, np.uint8)
        frame = np.full((*self.size, 3), 40, np.uint8)
        frame[0, 0, 1] = i  # the frame number, for the detector's fault injection
        if i in self.ship:
            frame[20:40, 30:50] = (255, 0, 0)
        return frame


class FakeDetector:
    """'CAM' = red pixels; ship score 0.95 when any, else 0.05."""

    def __init__(self, labels=("ship", "sea"), fail_on=(), delay_s=0.0):
        self.labels, self.fail_on, self.delay_s = labels, set(fail_on), delay_s
        self.input_size = (32, 32)

    def detect(self, frame):
        if self.delay_s:
            time.sleep(self.delay_s)
        if int(frame[0, 0, 1]) in self.fail_on:
            raise RuntimeError(f"model blew up on frame {frame[0, 0, 1]}")
        heat = (frame[..., 0] > 128).astype(np.float32)
        ship = 0.95 if heat.any() else 0.05
        scores = [ship, 1 - ship][: len(self.labels)]
        boxes = boxes_from_heatmap(heat) if ship > 0.5 else Boxes.empty()
        return FrameResult(scores, self.labels, [s >= 0.5 for s in scores], heat, boxes, {"infer": 0.5, "cam": 0.1})

    def detect_batch(self, frames):
        return [self.detect(f) for f in frames]


class PreparingDetector(FakeDetector):
    """Splits detect into prepare (capture thread) and detect_prepared, recording where each ran."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.prepare_threads, self.detect_threads = set(), set()

    def prepare(self, frame):
        self.prepare_threads.add(threading.current_thread().name)
        return ("prepared", frame)

    def detect_prepared(self, prepared):
        tag, frame = prepared
        assert tag == "prepared"
        self.detect_threads.add(threading.current_thread().name)
        return self.detect(frame)


class SplittingDetector(PreparingDetector):
    """Like edge.detector.Detector: ``infer`` (the model) and ``finish`` (CAM, boxes) apart; records threads."""

    def __init__(self, fail_finish_on=(), **kw):
        super().__init__(**kw)
        self.fail_finish_on = set(fail_finish_on)
        self.infer_threads, self.finish_threads, self.finished = set(), set(), []

    def infer(self, prepared):
        self.infer_threads.add(threading.current_thread().name)
        (p,) = prepared
        return ("inferred", p[1], self.detect(p[1]))

    def finish(self, inference):
        tag, frame, result = inference
        assert tag == "inferred"
        self.finish_threads.add(threading.current_thread().name)
        i = int(frame[0, 0, 1])
        self.finished.append(i)
        if i in self.fail_finish_on:
            raise ValueError(f"CAM failed on frame {i}")
        return [result]


def _lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _video_frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _options(tmp_path, **kw):
    base = dict(out_dir=tmp_path / "run", mode="all", hysteresis=HysteresisOptions(0.6, 0.4, 3),
                smoother_alpha=1.0, event_label="ship")
    return RunOptions(**{**base, **kw})


def test_run_writes_records_events_video_and_summary(tmp_path):
    opts = _options(tmp_path)
    summary = run(FakeDetector(), ShipClip(), opts)
    out = opts.out_dir

    assert (summary["frames"], summary["dropped"], summary["corrupt"], summary["errors"], summary["events"]) == (40, 0, 0, 0, 1)
    assert summary["ended_by"] == "source ended"
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert {"detect", "infer", "cam", "annotate", "sinks"} <= set(summary["p50_ms"]) == set(summary["p95_ms"])
    assert summary["latency_ms"]["detect"]["count"] == 40

    records = _lines(out / "frames.jsonl")
    assert [r["frame"] for r in records] == list(range(40))
    # the synthetic source is live: a capture time (wall clock, UTC) but no media position
    assert list(records[0]) == ["schema_version", "source", "frame", "t", "scores", "positive", "boxes", "peak", "timings_ms",
                                "smoothed", "time"]
    assert records[0]["time"].endswith("Z") and "media_ms" not in records[0]
    assert records[15]["boxes"] == [{"xyxy": [30.0, 20.0, 50.0, 40.0], "confidence": 1.0, "score": 1.0, "class_id": 0}]
    assert records[15]["positive"] == ["ship"] and records[5]["positive"] == ["sea"]
    assert records[15]["smoothed"] == pytest.approx(0.95)
    with_events = [(r["frame"], r["event"]["kind"]) for r in records if "event" in r]
    assert with_events == [(12, "start"), (30, "end")]  # 3 frames to enter; first frame below leave ends it
    assert records[12]["event"]["start_frame"] == 10

    events = _lines(out / "events" / "events.jsonl")
    assert [(e["kind"], e["start_frame"], e["end_frame"]) for e in events] == [("start", 10, None), ("end", 10, 30)]
    assert cv2.imread(str(out / "events" / events[0]["snapshot"])).shape == (72, 96, 3)
    assert _video_frames(out / "video.mp4") == 40


def test_open_event_is_closed_at_the_end_of_the_stream(tmp_path):
    opts = _options(tmp_path, write_video=False)
    run(FakeDetector(), ShipClip(n=20, ship=range(5, 20)), opts)
    events = _lines(opts.out_dir / "events" / "events.jsonl")
    assert [(e["kind"], e["end_frame"]) for e in events] == [("start", None), ("end", 19)]
    assert not (opts.out_dir / "video.mp4").exists()


def test_one_bad_frame_does_not_stop_the_loop(tmp_path):
    opts = _options(tmp_path, write_video=False)
    summary = run(FakeDetector(fail_on={5}), ShipClip(corrupt={8}), opts)
    assert (summary["errors"], summary["corrupt"], summary["frames"]) == (1, 1, 38)
    frames = [r["frame"] for r in _lines(opts.out_dir / "frames.jsonl")]
    assert frames == [i for i in range(40) if i not in (5, 8)]


def test_latest_mode_drops_under_a_slow_detector(tmp_path):
    summary = run(FakeDetector(delay_s=0.01), ShipClip(n=60), _options(tmp_path, mode="latest", write_video=False))
    assert summary["dropped"] > 0
    assert summary["frames"] + summary["dropped"] == 60


def test_max_frames_and_stop_event(tmp_path):
    assert run(FakeDetector(), ShipClip(), _options(tmp_path, max_frames=7))["frames"] == 7
    stop = threading.Event()

    def on_frame(item, result, record):
        if item.index == 4:
            stop.set()

    opts = _options(tmp_path, out_dir=tmp_path / "b")
    summary = run(FakeDetector(), ShipClip(), opts, stop_event=stop, on_frame=on_frame)
    # frames already inferred when the stop came (at most the output queue and the one in hand) are still recorded
    assert summary["ended_by"] == "stopped" and 5 <= summary["frames"] <= 5 + opts.queue_size + 1
    assert _video_frames(tmp_path / "b" / "video.mp4") == summary["frames"]
    assert len((tmp_path / "b" / "frames.jsonl").read_text().splitlines()) == summary["frames"]


def test_tiled_run_finds_one_box_across_the_seam(tmp_path):
    class Wide(ShipClip):
        def _read(self):
            frame = super()._read()
            if frame is not None:
                frame[:, :, 0] = 0
                frame[30:60, 80:130, 0] = 255  # straddles the seam at x=100
            return frame

    opts = _options(tmp_path, tile=TileSpec((100, 100), 0.0), write_video=False, max_frames=3)
    run(FakeDetector(labels=("ship",)), Wide(size=(100, 300)), opts)
    for record in _lines(opts.out_dir / "frames.jsonl"):
        assert [b["xyxy"] for b in record["boxes"]] == [[80.0, 30.0, 130.0, 60.0]]
        assert "stitch" in record["timings_ms"]


def test_top_positive_label_drives_events_without_event_label(tmp_path):
    opts = _options(tmp_path, event_label=None, write_video=False)
    summary = run(FakeDetector(labels=("ship",)), ShipClip(), opts)
    events = _lines(opts.out_dir / "events" / "events.jsonl")
    assert summary["events"] == 1 and events[0]["label"] == "ship"


def test_run_off_the_main_thread_and_with_live_view(tmp_path):
    box = {}
    worker = threading.Thread(target=lambda: box.update(s=run(FakeDetector(), ShipClip(n=10), _options(tmp_path, live="127.0.0.1:0"))))
    worker.start()
    worker.join(20)
    assert box["s"]["frames"] == 10


def test_pipeline_on_the_real_synthetic_clip(tmp_path):
    synthetic = pytest.importorskip("edge.synthetic")
    if not hasattr(synthetic, "SceneClip"):
        pytest.skip("edge.synthetic has no SceneClip yet")
    from edge.sources import SyntheticSource

    opts = _options(tmp_path)
    summary = run(FakeDetector(), SyntheticSource(seed=0, n_frames=12), opts)
    assert (summary["frames"], summary["errors"], summary["corrupt"]) == (12, 0, 0)
    assert _video_frames(opts.out_dir / "video.mp4") == 12


def test_unknown_event_label_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="event_label"):
        run(FakeDetector(), ShipClip(), _options(tmp_path, event_label="whale"))


class HalfHeatDetector(FakeDetector):
    """Heat 0.5 on the red pixels, and a box threshold of its own, as DetectorOptions gives edge.detector.Detector."""

    def __init__(self, box_threshold, **kw):
        super().__init__(**kw)
        self.options = DetectorOptions(box_threshold=box_threshold)

    def box_level(self, class_index=0):
        return self.options.box_threshold

    def detect(self, frame):
        r = super().detect(frame)
        return FrameResult(r.scores, r.labels, r.positive, r.heatmap * 0.5, r.boxes, r.timings_ms)


@pytest.mark.parametrize("run_threshold", [0.7, 0.3])
def test_a_run_threshold_that_disagrees_with_the_detectors_is_refused(tmp_path, run_threshold):
    det = HalfHeatDetector(box_threshold=0.5, labels=("ship",))
    with pytest.raises(ConfigError, match=rf"DetectorOptions.box_threshold 0.5\).*received {run_threshold}"):
        run(det, ShipClip(), _options(tmp_path, threshold=run_threshold, event_label=None))
    assert not (tmp_path / "run").exists()  # refused before anything is recorded


@pytest.mark.parametrize(("detector_threshold", "run_threshold", "boxed"), [(0.3, None, True), (0.3, 0.3, True),
                                                                            (0.7, None, False), (0.7, 0.7, False)])
def test_tiled_boxes_follow_the_one_box_threshold(tmp_path, detector_threshold, run_threshold, boxed):
    # heat 0.5 on the ship: a box at a level of 0.3, none at 0.7, whichever option states the level
    opts = _options(tmp_path, tile=TileSpec((36, 48), 0.0), write_video=False, threshold=run_threshold, event_label=None,
                    max_frames=12)
    run(HalfHeatDetector(detector_threshold, labels=("ship",)), ShipClip(), opts)
    ship_frames = [r for r in _lines(opts.out_dir / "frames.jsonl") if r["frame"] >= 10]
    assert ship_frames and all(bool(r["boxes"]) is boxed for r in ship_frames)


@pytest.mark.parametrize(
    "kwargs, ok",
    [
        ({}, True),
        ({"mode": "all", "stride": 2, "live": "8080"}, True),
        ({"live": "[::1]:8081"}, True),
        ({"mode": "fast"}, False),
        ({"stride": 0}, False),
        ({"threshold": 0.0}, False),
        ({"max_frames": 0}, False),
        ({"live": "localhost:http"}, False),
        ({"tile": (224, 224)}, False),
        ({"hysteresis": {"enter": 0.7}}, False),
        ({"video_fps": -1}, False),
    ],
)
def test_run_options_validation(kwargs, ok):
    if ok:
        opts = RunOptions(**kwargs)
        assert isinstance(opts.mode, CaptureMode)
    else:
        with pytest.raises(ConfigError):
            RunOptions(**kwargs)


def test_run_options_from_dict():
    opts = RunOptions.from_dict({"out_dir": "x", "mode": "latest", "tile": {"tile": [64, 64]}, "hysteresis": {"leave": 0.3}, "live": "127.0.0.1:9000"})
    assert (opts.out_dir, opts.tile.tile, opts.hysteresis.leave, opts.live_address) == (Path("x"), (64, 64), 0.3, ("127.0.0.1", 9000))
    with pytest.raises(ConfigError, match="unknown \\['colour'\\]"):
        RunOptions.from_dict({"colour": "red"})


# ---------------------------------------------------------------- clean stop on a signal

_SCRIPT = """
import sys, time
import numpy as np
from edge.pipeline import RunOptions, run
from edge.results import Boxes, FrameResult
from edge.sources import FrameSource

class Endless(FrameSource):
    def _open(self):
        self.i = 0
    def _read(self):
        time.sleep(0.004)
        frame = np.full((72, 96, 3), 30, np.uint8)
        x = (self.i * 3) % 80
        frame[20:40, x:x + 16, 0] = 255
        self.i += 1
        return frame

class Det:
    labels = ("ship",)
    def detect(self, frame):
        heat = (frame[..., 0] > 128).astype(np.float32)
        return FrameResult([0.9], self.labels, [True], heat, Boxes.empty(), {"infer": 1.0})

def on_frame(item, result, record):
    if item.index == 0:
        print("READY", flush=True)

summary = run(Det(), Endless(), RunOptions(out_dir=sys.argv[1], mode="all"), on_frame=on_frame)
print("DONE", summary["frames"], summary["ended_by"], flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_leaves_playable_video_and_complete_jsonl(tmp_path, sig):
    script = tmp_path / "runner.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, str(script), str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if (out / "frames.jsonl").exists() and (out / "frames.jsonl").read_bytes().count(b"\n") >= 15:
                break
            time.sleep(0.02)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ended_by"] == "stopped" and summary["frames"] >= 15
    assert f"DONE {summary['frames']} stopped" in stdout

    raw = (out / "frames.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    records = [json.loads(line) for line in raw.decode().splitlines()]  # every line parses
    assert [r["frame"] for r in records] == list(range(summary["frames"]))
    assert _video_frames(out / "video.mp4") == summary["frames"]


# ---------------------------------------------------------------- latency stats


@pytest.mark.parametrize("seed, n", [(0, 1), (1, 17), (2, 1000), (3, 5000)])
def test_latency_percentiles_match_numpy(seed, n):
    data = np.random.default_rng(seed).lognormal(2.0, 0.6, n)
    stats = LatencyStats(capacity=10_000)
    for v in data:
        stats.add("infer", v)
    s = stats.summary(digits=9)["infer"]
    np.testing.assert_allclose([s["p50"], s["p95"], s["p99"]], np.percentile(data, [50, 95, 99]), atol=1e-8)
    assert s["mean"] == pytest.approx(data.mean(), abs=1e-8)
    assert (s["count"], s["window"], s["max"]) == (n, n, pytest.approx(data.max(), abs=1e-8))
    assert stats.percentile("infer", 90) == pytest.approx(np.percentile(data, 90))


def test_latency_window_keeps_the_last_values_only():
    data = np.arange(2500, dtype=float)
    stats = LatencyStats(capacity=1000)
    for v in data:
        stats.add("detect", v)
    np.testing.assert_array_equal(stats.window("detect"), data[-1000:])
    s = stats.summary()["detect"]
    assert (s["count"], s["window"], s["p50"]) == (2500, 1000, pytest.approx(np.percentile(data[-1000:], 50)))


def test_latency_memory_is_bounded():
    stats = LatencyStats(capacity=1000)
    stats.add_many({"a": 1.0, "b": 2.0})
    size = stats.nbytes()
    assert size == 2 * 1000 * 8
    tracemalloc.start()
    try:
        for i in range(5000):
            stats.add_many({"a": i, "b": i})
        _, first = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(50_000):
            stats.add_many({"a": i, "b": i})
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.nbytes() == size and stats.count("a") == 55_001
    assert current - first < 10_000, "ten times more frames must not mean more memory"


def test_latency_timer_and_bad_values():
    stats = LatencyStats()
    with stats.timer("sleep"):
        time.sleep(0.01)
    assert stats.window("sleep")[0] >= 9.0
    with pytest.raises(ValueError):
        stats.add("x", float("nan"))
    with pytest.raises(ConfigError):
        LatencyStats(capacity=0)
    assert np.isnan(stats.percentile("missing", 50)) and stats.summary()["sleep"]["count"] == 1


def test_run_prepares_frames_on_the_capture_thread(tmp_path):
    det = PreparingDetector()
    summary = run(det, ShipClip(), _options(tmp_path, write_video=False))
    assert summary["frames"] == 40 and summary["errors"] == 0
    assert det.detect_threads == {threading.main_thread().name}
    assert det.prepare_threads and threading.main_thread().name not in det.prepare_threads


def test_run_infers_on_the_main_thread_and_finishes_on_the_output_thread_in_order(tmp_path):
    det = SplittingDetector(fail_on={3}, fail_finish_on={7})
    summary = run(det, ShipClip(n=20), _options(tmp_path, write_video=False))
    main = threading.main_thread().name
    assert det.infer_threads == {main} and det.finish_threads and main not in det.finish_threads
    assert not det.detect_threads, "detect_prepared is not used when the detector splits"
    # frame 3 failed in the model, frame 7 after it: both counted, the rest recorded in order
    assert summary["frames"] == 18 and summary["errors"] == 2
    assert det.finished == [i for i in range(20) if i != 3]
    assert [r["frame"] for r in _lines(tmp_path / "run" / "frames.jsonl")] == [i for i in range(20) if i not in (3, 7)]


def test_a_slow_output_stage_with_a_short_queue_still_records_every_frame_in_order(tmp_path):
    class SlowFinish(SplittingDetector):
        def finish(self, inference):
            time.sleep(0.01)
            return super().finish(inference)

    det = SlowFinish()
    summary = run(det, ShipClip(n=30), _options(tmp_path, write_video=False, queue_size=2))
    assert summary["frames"] == 30 and summary["errors"] == 0 and det.finished == list(range(30))


def test_tiled_runs_do_not_prepare_whole_frames(tmp_path):
    from edge.tiling import TileSpec

    det = PreparingDetector()
    det.input_size = (32, 32)
    summary = run(det, ShipClip(n=5), _options(tmp_path, write_video=False, tile=TileSpec((32, 32))))
    assert summary["frames"] == 5 and not det.prepare_threads

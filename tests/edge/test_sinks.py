"""Sinks write whole lines, playable video and event snapshots; annotators never mutate input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import edge.sinks as sinks_module
from edge.annotate import BoxAnnotator, HeatmapAnnotator, LabelAnnotator, compose, default_annotator
from edge.errors import ConfigError, FrameError
from edge.results import Boxes, FrameResult
from edge.sinks import EventSink, JsonlSink, SinkError, VideoSink


def _result(h=48, w=64, score=0.8, boxes=((10, 8, 30, 20),)):
    heat = np.zeros((h, w), np.float32)
    heat[8:20, 10:30] = 1.0
    b = Boxes(np.array(boxes, np.float32), np.full(len(boxes), score), np.zeros(len(boxes))) if boxes else Boxes.empty()
    return FrameResult([score, 1 - score], ("ship", "sea"), [score >= 0.5, score < 0.5], heat, b, {"infer": 1.25})


def _frame(h=48, w=64, value=90):
    rng = np.random.default_rng(value)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- JSON lines


def test_jsonl_one_write_per_line_and_every_line_parses(tmp_path, monkeypatch):
    writes = []
    real_write = sinks_module.os.write
    monkeypatch.setattr(sinks_module.os, "write", lambda fd, data: writes.append(bytes(data)) or real_write(fd, data))
    path = tmp_path / "out" / "frames.jsonl"
    records = [{"frame": i, "score": np.float32(i / 10), "boxes": np.arange(4).reshape(1, 4), "label": "шип"} for i in range(5)]
    with JsonlSink(path) as sink:
        for r in records:
            sink.write(_frame(), _result(), r)
    assert len(writes) == 5 and all(w.endswith(b"\n") and w.count(b"\n") == 1 for w in writes)
    lines = path.read_text("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"frame": i, "score": pytest.approx(i / 10), "boxes": [[0, 1, 2, 3]], "label": "шип"} for i in range(5)
    ]


def test_jsonl_appends_and_close_is_idempotent(tmp_path):
    path = tmp_path / "f.jsonl"
    for run in range(2):
        sink = JsonlSink(path)
        sink.write(_frame(), _result(), {"run": run})
        sink.close()
        sink.close()
    assert [json.loads(line)["run"] for line in path.read_text().splitlines()] == [0, 1]
    with pytest.raises(SinkError, match="closed"):
        sink.write(_frame(), _result(), {"run": 9})


def test_jsonl_rejects_nan_instead_of_writing_invalid_json(tmp_path):
    with JsonlSink(tmp_path / "f.jsonl") as sink:
        with pytest.raises(ValueError):
            sink.write(_frame(), _result(), {"score": float("nan")})
    assert (tmp_path / "f.jsonl").read_text() == ""


# ---------------------------------------------------------------- video


def test_video_is_opened_lazily_and_playable_after_close(tmp_path):
    path = tmp_path / "v" / "out.mp4"
    sink = VideoSink(path, fps=12.0)
    assert not path.exists(), "no frame yet, no file"
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 255
    for _ in range(12):
        sink.write(red, _result(), {})
    sink.close()
    sink.close()
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
    b, g, r = frames[5].reshape(-1, 3).mean(0)
    assert r > 200 and b < 60, "RGB in, BGR on disk"


def test_video_annotator_is_applied_and_size_changes_are_refused(tmp_path):
    sink = VideoSink(tmp_path / "a.mp4", fps=5, annotator=BoxAnnotator((255, 0, 0), 1))
    sink.write(np.zeros((48, 64, 3), np.uint8), _result(), {})
    with pytest.raises(FrameError, match="expected a 64x48 frame .* received 32x24"):
        sink.write(np.zeros((24, 32, 3), np.uint8), _result(24, 32), {})
    sink.close()
    assert sink.frames == 1


@pytest.mark.parametrize("fps", [0, -1, "15", True])
def test_video_rejects_bad_fps(tmp_path, fps):
    with pytest.raises(ConfigError):
        VideoSink(tmp_path / "x.mp4", fps=fps)


# ---------------------------------------------------------------- events


def test_event_sink_snapshots_at_start_and_logs_both_ends(tmp_path):
    folder = tmp_path / "events"
    frame = np.full((48, 64, 3), (200, 40, 10), np.uint8)
    start = {"kind": "start", "id": 1, "label": "ship", "start_frame": 3, "start_t": 0.3,
             "end_frame": None, "end_t": None, "peak_score": 0.9}
    with EventSink(folder) as sink:
        sink.write(frame, _result(), {"frame": 2})  # no event: nothing written
        assert (folder / "events.jsonl").read_text() == ""
        sink.write(frame, _result(), {"frame": 5, "event": start})
        sink.record_event({**start, "kind": "end", "end_frame": 9, "end_t": 0.9})
    lines = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert [(l["kind"], l["id"]) for l in lines] == [("start", 1), ("end", 1)]
    assert lines[0]["snapshot"] == "event_0001.jpg" and "snapshot" not in lines[1]
    snap = cv2.imread(str(folder / "event_0001.jpg"))
    assert snap.shape == (48, 64, 3)
    np.testing.assert_allclose(snap.reshape(-1, 3).mean(0), (10, 40, 200), atol=6)  # BGR on disk
    assert sink.events == 1
    assert not list(folder.glob("*.tmp")), "snapshots are written atomically"


# ---------------------------------------------------------------- annotators


ANNOTATORS = {
    "heatmap": lambda: HeatmapAnnotator(),
    "box": lambda: BoxAnnotator(),
    "label": lambda: LabelAnnotator(),
    "compose": lambda: compose(HeatmapAnnotator(), BoxAnnotator(), LabelAnnotator()),
    "default": default_annotator,
}


@pytest.mark.parametrize("name", ANNOTATORS)
def test_annotators_do_not_mutate_their_input(name):
    frame = _frame()
    before = frame.copy()
    result = _result()
    heat_before = result.heatmap.copy()
    out = ANNOTATORS[name]().annotate(frame, result)
    np.testing.assert_array_equal(frame, before)
    np.testing.assert_array_equal(result.heatmap, heat_before)
    assert out is not frame and out.shape == frame.shape and out.dtype == np.uint8
    assert not np.array_equal(out, frame), "something was drawn"


def test_heatmap_alpha_extremes_are_exact():
    frame, result = _frame(), _result()
    np.testing.assert_array_equal(HeatmapAnnotator(alpha=0.0).annotate(frame, result), frame)
    full = HeatmapAnnotator(alpha=1.0, colormap=cv2.COLORMAP_JET).annotate(frame, result)
    jet = cv2.cvtColor(cv2.applyColorMap((result.heatmap * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(full, jet)
    assert full[10, 15].tolist() == [128, 0, 0]  # JET at 1.0 is dark red


def test_heatmap_is_resized_to_the_frame():
    small = _result(12, 16)
    out = HeatmapAnnotator(alpha=1.0).annotate(_frame(48, 64), small)
    assert out.shape == (48, 64, 3)


def test_box_edges_land_on_the_last_pixel_inside():
    canvas = np.zeros((48, 64, 3), np.uint8)
    out = BoxAnnotator(color=(255, 0, 255), thickness=1).annotate(canvas, _result(boxes=((10, 8, 30, 20),)))
    ys, xs = np.nonzero(out.any(axis=2))
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (10, 8, 29, 19)
    assert out[8, 10].tolist() == [255, 0, 255] and out[12, 12].tolist() == [0, 0, 0]


def test_label_text_and_fps():
    ann = LabelAnnotator()
    assert ann.text_for(_result(score=0.83)) == "ship 0.83 +"
    ann.annotate(_frame(), _result())
    ann._last -= 0.1  # pretend the previous frame was 100 ms ago
    ann.annotate(_frame(), _result())
    assert ann.fps == pytest.approx(10.0, rel=0.2)
    assert ann.text_for(_result(score=0.3)).startswith("sea 0.70 +") and "fps" in ann.text_for(_result())


@pytest.mark.parametrize("make", [
    lambda: HeatmapAnnotator(alpha=1.5), lambda: BoxAnnotator(color=(0, 0)), lambda: BoxAnnotator(thickness=0),
    lambda: LabelAnnotator(scale=0), lambda: compose(HeatmapAnnotator(), "box"),
])
def test_annotators_reject_bad_style(make):
    with pytest.raises(ConfigError):
        make()


def test_annotate_rejects_non_rgb_scenes():
    with pytest.raises(FrameError, match="RGB uint8"):
        BoxAnnotator().annotate(np.zeros((4, 4), np.uint8), _result())

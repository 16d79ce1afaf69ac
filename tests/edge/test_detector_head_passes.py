"""The detector's extra head passes: the same artifact on the frame downscaled, boxes mapped back and merged.

The backend stands in for a combined artifact whose head finds only vessels
at most 128 input pixels wide, as a head trained on 384-px crops does; it
renders its centre and size maps from the frame's known boxes at whatever
size it is given. A 240-px ferry is found only by the half-scale pass.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import edge.detector
from edge.detector import Detector, DetectorOptions
from edge.locate import render_targets
from edge.locmetrics import iou_matrix

FRAME_BOXES = np.array([[40, 60, 280, 140], [400, 200, 416, 212]], np.float32)  # a ferry and a boat, 256x512 frame
HEAD = {"kind": "locate", "stride": 8, "threshold": 0.5, "nms_iou": 0.3, "size_encoding": "log(side / stride)",
        "scales": [{"factor": 0.5, "threshold": 0.5, "min_side": 0.0}]}


class HeadBackend:
    """Scores and features of an empty classifier; centres (peaks 0.7) and sizes drawn from FRAME_BOXES at the input's scale."""

    key = "stand-in"

    def __init__(self, head=HEAD):
        self.manifest = types.SimpleNamespace(
            labels=("vessel",), thresholds=(0.5,), task="binary", has_head=True,
            extra={"frame_scale": 1.0, "head": head},
            cam=types.SimpleNamespace(weights=np.ones((1, 1), np.float32), bias=np.zeros(1, np.float32), pooling="cell"),
        )
        self.options = types.SimpleNamespace(input_size=None)
        self.shapes = []
        self.closed = False

    @property
    def input_size(self):
        return (256, 512)

    def prepare(self, batch):
        return batch

    def infer_prepared(self, batch, dequantize=True):
        n, h, w, _ = batch.shape
        self.shapes.append((h, w))
        boxes = FRAME_BOXES * (h / 256)
        seen = boxes[(boxes[:, 2] - boxes[:, 0]) <= 128]
        t = render_targets(seen, (h, w))
        return {"scores": np.zeros((n, 1), np.float32), "features": np.full((n, h // 32, w // 32, 1), -6, np.float32),
                "centres": np.repeat(0.7 * t.heat[None, ..., None], n, 0), "sizes": np.repeat(t.size[None], n, 0)}

    def output_quantization(self, role, arr):
        return None

    def dequantize(self, role, arr):
        return arr

    def close(self):
        self.closed = True


@pytest.fixture
def spawned(monkeypatch):
    made = []

    def create(manifest, key, options):
        assert key == "stand-in"
        made.append(HeadBackend())
        return made[-1]

    monkeypatch.setattr(edge.detector, "create_backend", create)
    return made


def _best_iou(found, truth):
    return iou_matrix(found, truth).max(axis=0)


def test_the_half_scale_pass_adds_the_ferry_and_runs_on_its_own_runtime(spawned):
    backend = HeadBackend()
    frame = np.zeros((256, 512, 3), np.uint8)
    with Detector(backend, DetectorOptions(warmup=0)) as det:
        assert [p.factor for p in det.head_passes] == [0.5]
        located = det.detect(frame).located
        assert len(spawned) == 1 and spawned[0].shapes == [(128, 256)] and backend.shapes == [(256, 512)]
    assert spawned[0].closed and backend.closed
    assert len(located) == 2  # the boat found by both passes is one box
    assert (_best_iou(located.xyxy, FRAME_BOXES) > 0.7).all()


def test_without_passes_the_head_misses_the_ferry(spawned):
    with Detector(HeadBackend(), DetectorOptions(warmup=0, head_passes=False)) as det:
        assert det.head_passes == ()
        located = det.detect(np.zeros((256, 512, 3), np.uint8)).located
    assert not spawned and len(located) == 1
    ferry, boat = _best_iou(located.xyxy, FRAME_BOXES)
    assert ferry == 0.0 and boat > 0.7


def test_a_pass_drops_its_boxes_below_min_side_and_keeps_its_own_threshold(spawned):
    head = dict(HEAD, scales=[{"factor": 0.5, "threshold": 0.5, "min_side": 64.0}])
    with Detector(HeadBackend(head), DetectorOptions(warmup=0)) as det:
        located = det.detect(np.zeros((256, 512, 3), np.uint8)).located
    assert len(located) == 2 and (_best_iou(located.xyxy, FRAME_BOXES) > 0.7).all()
    head = dict(HEAD, scales=[{"factor": 0.5, "threshold": 0.75, "min_side": 0.0}])
    with Detector(HeadBackend(head), DetectorOptions(warmup=0)) as det:
        assert len(det.detect(np.zeros((256, 512, 3), np.uint8)).located) == 1  # the peaks are 0.7: the pass finds none

"""A cell-pooled detector: absolute heatmaps, one scale for frames of any size, whole frames and tiles agree.

The backend here is a translation-equivariant stand-in for a model: each
feature cell is the mean brightness of its 32x32 input block, so a bright
patch is a "vessel" wherever it is. With CAM weight 1 and bias 0 a cell's
probability is ``sigmoid(feature)``; the test knows every answer.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from edge.detector import Detector, DetectorOptions
from edge.locmetrics import iou_matrix
from edge.tiling import TileSpec, detect_tiled


class BlockBackend:
    """Feature cell = 12 * (mean of channel 0 over a 32x32 block) / 255 - 6, as a real model's logit map."""

    def __init__(self, frame_scale=None, fixed_size=None):
        self.manifest = types.SimpleNamespace(
            labels=("vessel",), thresholds=(0.5,), task="binary", extra={"frame_scale": frame_scale} if frame_scale else {},
            cam=types.SimpleNamespace(weights=np.ones((1, 1), np.float32), bias=np.zeros(1, np.float32), pooling="cell"),
        )
        self.options = types.SimpleNamespace(input_size=fixed_size)
        self.shapes = []

    @property
    def input_size(self):
        return self.options.input_size or (128, 128)

    def prepare(self, batch):
        return batch

    def infer_prepared(self, batch, dequantize=True):
        n, h, w, _ = batch.shape
        self.shapes.append((h, w))
        blocks = batch[..., 0].astype(np.float32).reshape(n, h // 32, 32, w // 32, 32).mean(axis=(2, 4))
        feats = (12.0 * blocks / 255.0 - 6.0)[..., None]
        logits = feats.reshape(n, -1).max(axis=1, keepdims=True)
        return {"scores": 1 / (1 + np.exp(-logits)), "features": feats}

    def output_quantization(self, role, arr):
        return None

    def dequantize(self, role, arr):
        return arr

    def close(self):
        pass


def _frame(h=256, w=384, patch=None):
    f = np.full((h, w, 3), 20, np.uint8)
    if patch is not None:
        y, x, s = patch
        f[y : y + s, x : x + s] = 255
    return f


def test_an_empty_frame_looks_empty_and_is_not_flagged():
    det = Detector(BlockBackend(frame_scale=1.0), DetectorOptions(warmup=0))
    r = det.detect(_frame())
    # absolute scale: every cell is sigmoid(12 * 20 / 255 - 6), far below 0.5; a normalised CAM would show 1.0
    assert r.heatmap.max() == pytest.approx(1 / (1 + np.exp(-(12 * 20 / 255 - 6))), rel=1e-4)
    assert not r.positive[0] and len(r.boxes) == 0
    assert r.scores[0] == pytest.approx(r.heatmap.max(), rel=1e-4)


def test_the_score_is_the_best_cell_and_boxes_are_the_cells_above_the_threshold():
    det = Detector(BlockBackend(frame_scale=1.0), DetectorOptions(warmup=0))
    r = det.detect(_frame(patch=(64, 96, 32)))  # exactly one cell, row 2, column 3
    assert r.positive[0] and r.scores[0] == pytest.approx(1 / (1 + np.exp(-(12 * 255 / 255 - 6))), rel=1e-4)
    assert len(r.boxes) == 1
    x0, y0, x1, y1 = r.boxes.xyxy[0]
    assert x0 < 112 < x1 and y0 < 80 < y1  # around the patch centre
    assert r.peak == pytest.approx((111.5, 79.5), abs=1.0)


def test_frames_of_different_sizes_run_at_one_scale_without_reloading():
    backend = BlockBackend(frame_scale=0.5)
    det = Detector(backend, DetectorOptions(warmup=0))
    for hw in ((256, 384), (720, 1280), (1080, 1920)):
        det.detect(_frame(*hw))
    assert backend.shapes == [(128, 192), (352, 640), (544, 960)]  # each side x0.5, to a multiple of 32


def test_an_explicit_input_size_wins_over_the_manifest_scale_and_the_option_wins_over_both():
    det = Detector(BlockBackend(frame_scale=0.5, fixed_size=(96, 96)), DetectorOptions(warmup=0))
    assert det.scale is None and det.input_size_for(_frame()) == (96, 96)
    det = Detector(BlockBackend(frame_scale=0.5, fixed_size=(96, 96)), DetectorOptions(warmup=0, scale=2.0))
    assert det.input_size_for(_frame()) == (512, 768)


@pytest.mark.parametrize("patch", [(64, 96, 32), (100, 200, 40), (0, 0, 48)])
def test_whole_frame_and_tiles_agree(patch):
    det = Detector(BlockBackend(frame_scale=1.0), DetectorOptions(warmup=0))
    frame = _frame(patch=patch)
    whole = det.detect(frame)
    tiled = detect_tiled(det, frame, TileSpec(tile=(128, 128), overlap=0.5))
    assert bool(whole.positive[0]) == bool(tiled.positive[0]) is True
    assert tiled.scores[0] == pytest.approx(whole.scores[0], abs=0.05)
    assert len(whole.boxes) == len(tiled.boxes) == 1
    assert iou_matrix(whole.boxes.xyxy, tiled.boxes.xyxy)[0, 0] > 0.5


def test_tiles_of_an_empty_frame_make_no_boxes():
    det = Detector(BlockBackend(frame_scale=1.0), DetectorOptions(warmup=0))
    tiled = detect_tiled(det, _frame(), TileSpec(tile=(128, 128), overlap=0.25))
    assert not tiled.positive[0] and len(tiled.boxes) == 0 and tiled.heatmap.max() == 0.0


def test_a_bad_scale_is_refused():
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="scale"):
        DetectorOptions(scale=0.0)


def test_two_vessels_side_by_side_are_two_boxes():
    det = Detector(BlockBackend(frame_scale=1.0), DetectorOptions(warmup=0))
    frame = _frame(patch=(64, 96, 32))
    frame[64:96, 160:192] = 255  # a second hull two cells along, with a dimmer cell between them
    frame[64:96, 128:160] = 150
    r = det.detect(frame)
    assert len(r.boxes) == 2
    centres = sorted(float((b[0] + b[2]) / 2) for b in r.boxes.xyxy)
    assert centres[0] < 128 < centres[1]


def test_cell_peaks_and_box_split_on_a_hand_made_map():
    from edge.boxes import boxes_from_cells, cell_peaks
    from edge.cam import resize_heatmap

    cells = np.array([[0.1, 0.9, 0.7, 0.95, 0.1], [0.1, 0.2, 0.2, 0.2, 0.1]], np.float32)
    assert cell_peaks(cells, 0.5).tolist() == [[0, 1], [0, 3]]
    boxes = boxes_from_cells(cells, resize_heatmap(cells, (64, 160)), 0.5)
    assert len(boxes) == 2 and boxes.score.tolist() == pytest.approx([0.95, 0.9])
    # one peak: the same single box as the plain connected-region rule
    one = np.array([[0.1, 0.9, 0.6, 0.1]], np.float32)
    assert len(boxes_from_cells(one, resize_heatmap(one, (32, 128)), 0.5)) == 1


def test_a_peak_barely_above_the_threshold_still_gets_a_box():
    from edge.boxes import boxes_from_cells
    from edge.cam import resize_heatmap

    cells = np.full((3, 4), 0.1, np.float32)
    cells[1, 2] = 0.501  # upsampled, no pixel reaches 0.5 exactly
    hm = resize_heatmap(cells, (96, 128))
    assert hm.max() < 0.501
    boxes = boxes_from_cells(cells, hm, 0.5)
    assert len(boxes) == 1 and boxes.score[0] == pytest.approx(0.501)
    x0, y0, x1, y1 = boxes.xyxy[0]
    assert x0 < 79.5 < x1 and y0 < 47.5 < y1  # around the cell centre

"""Boxes from hand-made heatmaps, and merging across seams: exact values."""

from __future__ import annotations

import numpy as np
import pytest

from edge.boxes import boxes_from_heatmap, merge_boxes
from edge.errors import ConfigError, FrameError
from edge.results import Boxes


def _map(shape, blobs):
    """Heatmap with ``(y0, y1, x0, x1, value)`` rectangles painted in order."""
    hm = np.zeros(shape, np.float32)
    for y0, y1, x0, x1, v in blobs:
        hm[y0:y1, x0:x1] = v
    return hm


def _diagonal():
    hm = np.zeros((8, 8), np.float32)
    for i in range(1, 5):
        hm[i, i] = 0.8
    return hm


def _l_shape_around_island():
    # an L of 0.6 whose bounding box holds a separate, hotter 2x2 island
    hm = np.zeros((12, 12), np.float32)
    hm[1:10, 1:3] = 0.6
    hm[8:10, 1:11] = 0.6
    hm[3:5, 6:8] = 0.99
    return hm


CASES = [
    # id, heatmap, kwargs, expected xyxy, expected scores
    ("one-block", _map((10, 12), [(2, 5, 3, 7, 0.9)]), {}, [[3, 2, 7, 5]], [0.9]),
    ("peak-not-mean", _map((10, 12), [(2, 5, 3, 7, 0.6), (3, 4, 4, 5, 0.97)]), {}, [[3, 2, 7, 5]], [0.97]),
    (
        "sorted-by-score",
        _map((20, 20), [(1, 4, 1, 4, 0.7), (10, 15, 12, 18, 0.95)]),
        {},
        [[12, 10, 18, 15], [1, 1, 4, 4]],
        [0.95, 0.7],
    ),
    ("diagonal-is-8-connected", _diagonal(), {}, [[1, 1, 5, 5]], [0.8]),
    ("speckle-dropped", _map((10, 10), [(4, 5, 4, 5, 1.0)]), {}, [], []),
    ("speckle-kept-min-area-1", _map((10, 10), [(4, 5, 4, 5, 1.0)]), {"min_area": 1}, [[4, 4, 5, 5]], [1.0]),
    ("below-threshold", _map((10, 10), [(2, 6, 2, 6, 0.49)]), {}, [], []),
    ("at-threshold-counts", _map((10, 10), [(2, 6, 2, 6, 0.5)]), {}, [[2, 2, 6, 6]], [0.5]),
    ("touches-border-exclusive-end", _map((6, 9), [(3, 6, 5, 9, 0.8)]), {}, [[5, 3, 9, 6]], [0.8]),
    ("custom-threshold", _map((10, 10), [(0, 3, 0, 3, 0.3), (5, 9, 5, 9, 0.2)]), {"threshold": 0.25}, [[0, 0, 3, 3]], [0.3]),
    ("island-keeps-own-score", _l_shape_around_island(), {}, [[6, 3, 8, 5], [1, 1, 11, 10]], [0.99, 0.6]),
]


@pytest.mark.parametrize("heatmap, kwargs, xyxy, scores", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_boxes_from_heatmap_exact(heatmap, kwargs, xyxy, scores):
    boxes = boxes_from_heatmap(heatmap, **kwargs)
    assert boxes.xyxy.tolist() == [[float(v) for v in b] for b in xyxy]
    np.testing.assert_allclose(boxes.score, scores, rtol=0, atol=1e-6)
    assert boxes.class_id.tolist() == [0] * len(xyxy)


def test_class_id_is_written_into_every_box():
    boxes = boxes_from_heatmap(_map((10, 10), [(1, 3, 1, 3, 0.9), (6, 9, 6, 9, 0.8)]), class_id=3)
    assert boxes.class_id.tolist() == [3, 3]


def test_heatmap_is_not_mutated():
    hm = _l_shape_around_island()
    before = hm.copy()
    boxes_from_heatmap(hm)
    np.testing.assert_array_equal(hm, before)


@pytest.mark.parametrize(
    "heatmap, kwargs, error",
    [
        (np.zeros((4, 4, 3)), {}, FrameError),
        (np.zeros((0, 4)), {}, FrameError),
        (np.full((4, 4), np.nan), {}, FrameError),
        (np.zeros((4, 4)), {"threshold": 0.0}, ConfigError),
        (np.zeros((4, 4)), {"threshold": 1.5}, ConfigError),
        (np.zeros((4, 4)), {"min_area": 0}, ConfigError),
        (np.zeros((4, 4)), {"min_area": 2.5}, ConfigError),
        (np.zeros((4, 4)), {"threshold": 1.0, "min_area": 1}, None),
    ],
)
def test_boxes_from_heatmap_rejects_bad_input(heatmap, kwargs, error):
    if error is None:
        assert len(boxes_from_heatmap(heatmap, **kwargs)) == 0
    else:
        with pytest.raises(error):
            boxes_from_heatmap(heatmap, **kwargs)


def _boxes(xyxy, scores=None, classes=None):
    n = len(xyxy)
    return Boxes(np.array(xyxy, np.float32), np.array(scores or [0.5] * n), np.array(classes or [0] * n))


MERGES = [
    # id, boxes, kwargs, expected xyxy, expected scores
    ("shared-edge", _boxes([[0, 0, 10, 5], [10, 1, 16, 6]], [0.7, 0.9]), {}, [[0, 0, 16, 6]], [0.9]),
    ("one-pixel-gap", _boxes([[0, 0, 10, 5], [11, 0, 16, 5]], [0.7, 0.6]), {}, [[0, 0, 16, 5]], [0.7]),
    ("two-pixel-gap-stays", _boxes([[0, 0, 10, 5], [12, 0, 16, 5]], [0.7, 0.6]), {}, [[0, 0, 10, 5], [12, 0, 16, 5]], [0.7, 0.6]),
    ("two-pixel-gap-with-gap-2", _boxes([[0, 0, 10, 5], [12, 0, 16, 5]], [0.7, 0.6]), {"gap": 2}, [[0, 0, 16, 5]], [0.7]),
    ("diagonal-corner-touch", _boxes([[0, 0, 5, 5], [5, 5, 9, 9]], [0.4, 0.8]), {}, [[0, 0, 9, 9]], [0.8]),
    ("iou-only-touch-stays", _boxes([[0, 0, 10, 5], [10, 0, 16, 5]], [0.7, 0.6]), {"gap": None}, [[0, 0, 10, 5], [10, 0, 16, 5]], [0.7, 0.6]),
    ("iou-only-overlap-joins", _boxes([[0, 0, 10, 5], [8, 0, 16, 5]], [0.7, 0.6]), {"gap": None}, [[0, 0, 16, 5]], [0.7]),
    ("iou-threshold-not-reached", _boxes([[0, 0, 10, 10], [9, 0, 19, 10]], [0.7, 0.6]), {"gap": None, "iou_threshold": 0.5}, [[0, 0, 10, 10], [9, 0, 19, 10]], [0.7, 0.6]),
    ("chain", _boxes([[0, 0, 4, 4], [4, 0, 8, 4], [8, 0, 12, 4]], [0.5, 0.9, 0.6]), {}, [[0, 0, 12, 4]], [0.9]),
    # A and B join into a union that now contains C, which neither touched
    ("union-reaches-third", _boxes([[0, 0, 10, 3], [0, 3, 3, 10], [6, 6, 9, 9]], [0.5, 0.6, 0.7]), {}, [[0, 0, 10, 10]], [0.7]),
    ("classes-kept-apart", _boxes([[0, 0, 10, 5], [5, 0, 16, 5]], [0.7, 0.6], [0, 1]), {}, [[0, 0, 10, 5], [5, 0, 16, 5]], [0.7, 0.6]),
]


@pytest.mark.parametrize("boxes, kwargs, xyxy, scores", [m[1:] for m in MERGES], ids=[m[0] for m in MERGES])
def test_merge_boxes_exact(boxes, kwargs, xyxy, scores):
    merged = merge_boxes(boxes, **kwargs)
    assert merged.xyxy.tolist() == [[float(v) for v in b] for b in xyxy]
    np.testing.assert_allclose(merged.score, scores, atol=1e-6)


def test_merge_keeps_class_and_handles_empty():
    assert len(merge_boxes(Boxes.empty())) == 0
    merged = merge_boxes(_boxes([[0, 0, 4, 4], [4, 0, 8, 4]], [0.5, 0.6], [2, 2]))
    assert merged.class_id.tolist() == [2]


@pytest.mark.parametrize("kwargs", [{"iou_threshold": 1.0}, {"iou_threshold": -0.1}, {"gap": -1}])
def test_merge_boxes_rejects_bad_options(kwargs):
    with pytest.raises(ConfigError):
        merge_boxes(_boxes([[0, 0, 1, 1], [2, 2, 3, 3]]), **kwargs)

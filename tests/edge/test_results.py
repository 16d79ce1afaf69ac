"""FrameResult: shapes checked, the frame-size heatmap computed once and only when asked for."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import FrameError
from edge.results import Boxes, FrameResult


def test_a_heatmap_function_runs_once_on_first_access():
    calls = []

    def make():
        calls.append(1)
        return np.full((4, 6), 0.5, np.float64)

    r = FrameResult([0.9], ("ship",), [True], make, Boxes.empty(), {"infer": 1.0})
    assert calls == [], "nothing is upsampled until someone looks"
    assert r.to_record()["scores"] == {"ship": 0.9} and calls == []
    hm = r.heatmap
    assert hm.dtype == np.float32 and hm.shape == (4, 6)
    assert r.heatmap is hm and calls == [1]


def test_a_heatmap_function_with_the_wrong_shape_fails_when_read():
    r = FrameResult([0.9], ("ship",), [True], lambda: np.zeros(5), Boxes.empty())
    with pytest.raises(FrameError, match=r"expects an \(H, W\) heatmap; received shape \(5,\)"):
        r.heatmap


def test_an_array_heatmap_is_checked_at_once_and_labels_must_match_scores():
    with pytest.raises(FrameError, match="heatmap"):
        FrameResult([0.9], ("ship",), [True], np.zeros((2, 2, 2)), Boxes.empty())
    with pytest.raises(FrameError, match="one score and one decision per label"):
        FrameResult([0.9, 0.1], ("ship",), [True, False], np.zeros((2, 2)), Boxes.empty())
    r = FrameResult([0.2, 0.8], ["sea", "ship"], [False, True], np.zeros((2, 2)), Boxes.empty(), peak=(1.0, 2.0))
    assert r.top == 1 and r.labels == ("sea", "ship") and "ship=0.800" in repr(r)


def two_class_result(make_heatmap=None) -> FrameResult:
    boxes = Boxes([[10, 20, 50, 60], [100, 5, 140, 45], [0, 0, 8, 8]], [0.91, 0.55, 0.3], [1, 0, 1])
    heatmap = make_heatmap if make_heatmap is not None else np.zeros((64, 160), np.float32)
    return FrameResult([0.3, 0.9], ("buoy", "ship"), [False, True], heatmap, boxes, {"infer": 2.0}, peak=(30.0, 40.0))


def test_confidence_is_the_box_score_and_score_stays_an_alias():
    b = Boxes([[1, 2, 3, 4]], [0.75], [0])
    assert b.confidence.dtype == np.float32 and b.score is b.confidence
    assert b.to_list() == [{"xyxy": [1.0, 2.0, 3.0, 4.0], "confidence": 0.75, "score": 0.75, "class_id": 0}]
    with pytest.raises(ValueError, match="confidence \\(N,\\)"):
        Boxes([[1, 2, 3, 4]], [0.5, 0.6], [0])


def test_boxes_round_trip_through_supervision_detections():
    sv = pytest.importorskip("supervision")
    r = two_class_result()
    d = r.to_supervision()
    assert isinstance(d, sv.Detections) and len(d) == 3
    np.testing.assert_array_equal(d.xyxy, r.boxes.xyxy)
    np.testing.assert_array_equal(d.confidence, r.boxes.confidence)
    assert list(d.class_id) == [1, 0, 1] and list(d.data["class_name"]) == ["ship", "buoy", "ship"]
    back = Boxes.from_supervision(d)
    for name in ("xyxy", "confidence", "class_id"):
        np.testing.assert_array_equal(getattr(back, name), getattr(r.boxes, name))
    empty = Boxes.empty().to_supervision(("ship",))
    assert len(empty) == 0 and len(Boxes.from_supervision(empty)) == 0


def test_supervision_filters_come_back_into_the_frame_result_without_computing_the_heatmap():
    pytest.importorskip("supervision")
    calls = []

    def make():
        calls.append(1)
        return np.zeros((64, 160), np.float32)

    r = two_class_result(make)
    d = r.to_supervision()
    kept = r.with_detections(d[d.confidence > 0.5])  # supervision's own indexing, as a user filters
    assert len(kept.boxes) == 2 and list(kept.boxes.confidence) == pytest.approx([0.91, 0.55])
    assert np.shares_memory(kept.scores, r.scores) and kept.labels == r.labels and calls == []
    assert kept.heatmap.shape == (64, 160) and calls == [1]


class FakeDetections:
    """Shaped like supervision.Detections where it matters here: xyxy, confidence, class_id, data."""

    def __init__(self, xyxy, confidence, class_id, data=None):
        self.xyxy, self.confidence, self.class_id, self.data = np.asarray(xyxy), confidence, class_id, data or {}


def test_from_supervision_takes_class_names_through_the_labels_and_refuses_what_it_cannot_map():
    d = FakeDetections([[0, 0, 4, 4], [1, 1, 5, 5]], np.array([0.6, 0.7]), None,
                       {"class_name": np.array(["ship", "buoy"])})
    b = Boxes.from_supervision(d, labels=("buoy", "ship"))
    assert list(b.class_id) == [1, 0] and list(b.confidence) == pytest.approx([0.6, 0.7])
    with pytest.raises(ValueError, match="not among the labels"):
        Boxes.from_supervision(d, labels=("ship",))
    with pytest.raises(ValueError, match="with class_id, or data"):
        Boxes.from_supervision(FakeDetections([[0, 0, 4, 4]], np.array([0.6]), None))
    with pytest.raises(ValueError, match="confidence=None"):
        Boxes.from_supervision(FakeDetections([[0, 0, 4, 4]], None, np.array([0])))


def test_to_supervision_needs_a_label_for_every_class_id():
    pytest.importorskip("supervision")
    with pytest.raises(ValueError, match="a label for every class_id"):
        Boxes([[0, 0, 4, 4]], [0.5], [2]).to_supervision(("ship",))

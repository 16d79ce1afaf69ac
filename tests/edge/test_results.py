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

"""The demo scores its clip with edge.metrics' pointing game, reading the clip's exclusive box ends."""

from __future__ import annotations

import numpy as np
import pytest


def test_demo_ship_distance_reads_the_clips_exclusive_box_ends():
    """A clip box [10, 10, 20, 20) covers pixels 10..19: a peak at x = 19.5 is half a pixel off it."""
    from training.demo import ship_distance

    boxes = np.array([[10, 10, 20, 20]], np.float32)
    assert ship_distance((19.0, 15.0), boxes) == 0.0
    assert ship_distance((19.5, 15.0), boxes) == pytest.approx(0.5)
    assert ship_distance(None, boxes) == float("inf")

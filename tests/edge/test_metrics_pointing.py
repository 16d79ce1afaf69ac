"""The pointing game in edge.metrics: distances and hits on hand-made peaks and boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.errors import ConfigError, DataError
from edge.metrics import pointing_distance, pointing_hit

BOX = np.array([[100.0, 100.0, 140.0, 120.0]])
TWO = np.array([[100.0, 100.0, 140.0, 120.0], [0.0, 0.0, 10.0, 10.0]])


@pytest.mark.parametrize("peak, euclidean, chebyshev", [
    ((120, 110), 0.0, 0.0),              # inside
    ((140, 120), 0.0, 0.0),              # on the corner: boxes are closed
    ((150, 110), 10.0, 10.0),            # right of the box
    ((110, 90), 10.0, 10.0),             # above it
    ((150, 132), math.hypot(10, 12), 12.0),  # off the corner: the two metrics part
    ((13, 14), 5.0, 4.0),                # nearest is the second box (3, 4 off its corner)
])
def test_distance_to_the_nearest_box(peak, euclidean, chebyshev):
    assert pointing_distance(peak, TWO) == pytest.approx(euclidean)
    assert pointing_distance(peak, TWO, metric="chebyshev") == pytest.approx(chebyshev)


@pytest.mark.parametrize("peak, tolerance, euclidean_hit, chebyshev_hit", [
    ((120, 110), 0.0, True, True),
    ((140.5, 110), 0.0, False, False),
    ((150, 110), 15.0, True, True),
    ((160, 110), 15.0, False, False),
    ((150, 132), 15.0, False, True),     # 15.6 px away in a straight line, 12 px in the larger gap
])
def test_hit_within_tolerance(peak, tolerance, euclidean_hit, chebyshev_hit):
    assert pointing_hit(peak, BOX, tolerance) is euclidean_hit
    assert pointing_hit(peak, BOX, tolerance, metric="chebyshev") is chebyshev_hit


@pytest.mark.parametrize("peak, boxes", [(None, BOX), ((5.0, 5.0), np.zeros((0, 4))), ((5.0, 5.0), [])])
def test_no_peak_or_no_box_is_a_miss_at_any_tolerance(peak, boxes):
    assert pointing_distance(peak, boxes) == math.inf
    assert pointing_hit(peak, boxes, 1e6) is False


@pytest.mark.parametrize("call, error, match", [
    (lambda: pointing_hit((1, 1), BOX, -1.0), ConfigError, "tolerance"),
    (lambda: pointing_hit((1, 1), BOX, math.inf), ConfigError, "tolerance"),
    (lambda: pointing_hit((1, 1), BOX, True), ConfigError, "tolerance"),
    (lambda: pointing_distance((1, 1), BOX, metric="manhattan"), ConfigError, "euclidean"),
    (lambda: pointing_distance((1, 1), np.zeros((2, 3))), DataError, r"\(N, 4\).*\(2, 3\)"),
    (lambda: pointing_distance((1, 1), [[10, 0, 5, 5]]), DataError, "x1 >= x0"),
    (lambda: pointing_distance((1, 1), [[0, 0, np.nan, 5]]), DataError, "finite"),
    (lambda: pointing_distance((1, 2, 3), BOX), DataError, "peak"),
    (lambda: pointing_distance(("a", 2), BOX), DataError, "peak"),
    (lambda: pointing_distance((np.inf, 2), BOX), DataError, "peak"),
])
def test_bad_input_names_what_was_expected(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_inputs_are_not_mutated():
    boxes = TWO.copy()
    pointing_hit((150.0, 132.0), boxes, 15.0)
    np.testing.assert_array_equal(boxes, TWO)

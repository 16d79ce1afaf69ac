"""Choosing the head's extra pass on validation frames, without TensorFlow: hand-made decoded boxes per scale."""

import numpy as np
import pytest

from edge.errors import ConfigError
from training.locate_scales import _factors, apply_choice, choose_passes, figures

# two frames: a 200-px ferry with a 12-px boat, and an 80-px tug
GTS = [np.array([[100, 100, 300, 160], [500, 300, 512, 306]], np.float32), np.array([[40, 40, 120, 70]], np.float32)]


def _found(*pairs):
    return [(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(s, np.float32)) for b, s in pairs]


# frame scale: the boat (0.9) and half of the tug (0.6); a false box on the shore at 0.55
BASE = _found(([[498, 298, 514, 308]], [0.9]), ([[40, 40, 80, 70], [700, 10, 720, 20]], [0.6, 0.55]))
# half scale: the ferry (0.7) and the tug (0.8); its 14-px false box (0.75) is smaller than any vessel it finds
HALF = _found(([[105, 98, 295, 165], [600, 50, 614, 58]], [0.7, 0.75]), ([[42, 38, 118, 72]], [0.8]))


def test_figures_count_recall_by_width_and_false_boxes():
    row = figures(BASE, GTS)
    assert row["recall_small"] == 1.0 and row["recall_wide"] == 0.5 and row["false_per_frame"] == 0.5


def test_the_pass_is_chosen_when_it_finds_the_large_vessels_within_the_allowance():
    result = choose_passes({1.0: BASE, 0.5: HALF}, GTS, max_false_per_frame=0.0)
    single = result["single"]
    # alone, only a threshold above the false box (0.55) keeps the allowance: the boat and the tug's half
    assert 0.55 < single["threshold"] <= 0.6 and single["recall_wide"] == 0.5 and single["false_per_frame"] == 0.0
    choice = result["choice"]
    # with the pass: the ferry too, and its small false box is dropped by the smallest side (or its threshold)
    assert choice["pass"]["factor"] == 0.5 and choice["recall_wide"] == 1.0 and choice["recall_small"] == 1.0
    assert choice["false_per_frame"] == 0.0
    spec = apply_choice({"stride": 8, "threshold": 0.1}, result)
    assert spec["threshold"] == choice["threshold"] and spec["scales"] == [choice["pass"]]


def test_a_pass_that_adds_only_false_boxes_is_not_chosen():
    noisy = _found(([[600, 50, 700, 100]], [0.95]), ([[800, 40, 900, 90]], [0.95]))
    result = choose_passes({1.0: BASE, 0.5: noisy}, GTS, max_false_per_frame=0.0)
    assert "pass" not in result["choice"] and apply_choice({"threshold": 0.1}, result)["scales"] == []


def test_factors_are_checked():
    assert _factors("0.5, 0.25") == (0.5, 0.25)
    with pytest.raises(ConfigError, match="factor"):
        _factors("0.5,1.2")
    with pytest.raises(ConfigError, match="numbers"):
        _factors("half")

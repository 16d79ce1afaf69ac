"""BaseCAM's template: a subclass supplies only channel weights and gets the weighted sum, ReLU, normalisation and resize."""

from __future__ import annotations

import numpy as np
import pytest

from edge.cam import BaseCAM, DenseCAM
from edge.errors import FrameError


class ChannelMean(BaseCAM):
    """Every channel weighted 1 / K: the mean activation map (a subclass of a few lines, as a new CAM method is)."""

    def channel_weights(self, features, class_index):
        return np.full(features.shape[-1], 1.0 / features.shape[-1], np.float32)


class WrongLength(BaseCAM):
    def channel_weights(self, features, class_index):
        return np.ones(features.shape[-1] + 1, np.float32)


FEATURES = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)


@pytest.mark.parametrize("cam", [ChannelMean(), DenseCAM(np.random.default_rng(1).normal(size=(4, 2)))],
                         ids=["subclass", "dense"])
def test_every_cam_keeps_the_contract(cam):
    raw = cam.raw(FEATURES, 1)
    assert raw.shape == (3, 5) and raw.dtype == np.float32
    heat = cam(FEATURES, 1, size=(30, 50))
    assert heat.shape == (30, 50) and heat.dtype == np.float32
    # bilinear samples fall between cell centres, so the resized peak may sit a little under the map's 1.0
    assert heat.min() >= 0.0 and 0.9 < heat.max() <= 1.0
    at_cells = cam(FEATURES, 1)
    assert at_cells.max() == 1.0
    np.testing.assert_allclose(at_cells, np.maximum(raw, 0) / raw.max(), rtol=1e-6)
    np.testing.assert_array_equal(cam(FEATURES[None], 1), cam(FEATURES, 1))  # a batch of one is unwrapped


def test_the_subclass_map_is_the_weighted_sum():
    np.testing.assert_allclose(ChannelMean().raw(FEATURES, 0), FEATURES.mean(-1), rtol=1e-6)


def test_an_all_negative_map_is_all_zeros_not_nan():
    heat = ChannelMean()(-np.abs(FEATURES) - 1.0, 0, size=(6, 10))
    assert heat.shape == (6, 10) and not heat.any()


@pytest.mark.parametrize("cam, features, match", [
    (ChannelMean(), np.zeros((2, 3, 5, 4), np.float32), r"\(h, w, K\) feature map; received shape \(2, 3, 5, 4\)"),
    (ChannelMean(), np.zeros((5, 4), np.float32), r"received shape \(5, 4\)"),
    (WrongLength(), FEATURES, r"expected \(4,\); received \(5,\)"),
    (DenseCAM(np.zeros((4, 2))), FEATURES, r"class index: expected 0..1; received 2"),
])
def test_bad_shapes_and_classes_are_refused(cam, features, match):
    with pytest.raises(FrameError, match=match):
        cam(features, 2 if isinstance(cam, DenseCAM) else 0)

"""Test-time augmentation flips only the ways training did."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.evaluate import _training_augment, tta_flips, tta_views


@pytest.mark.parametrize("augment, flips", [("aerial", ("horizontal", "vertical")), ("upright", ("horizontal",)),
                                            ("none", ("horizontal",)), (None, ("horizontal",))])
def test_flips_follow_the_training_augmentation(augment, flips):
    assert tta_flips(augment) == flips


def test_views_are_the_images_then_each_flip():
    images = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    views = tta_views(images, ("horizontal", "vertical"))
    assert len(views) == 3 and views[0] is images
    np.testing.assert_array_equal(views[1], images[:, :, ::-1])
    np.testing.assert_array_equal(views[2], images[:, ::-1])
    assert all(v.flags["C_CONTIGUOUS"] for v in views)
    with pytest.raises(ValueError, match="received 'diagonal'"):
        tta_views(images, ("diagonal",))


def test_the_training_augmentation_is_read_from_the_run_directory(tmp_path):
    assert _training_augment(None) is None and _training_augment(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps({"augment": "upright"}))
    assert _training_augment(tmp_path) == "upright"
    (tmp_path / "config.json").write_text("{broken")
    assert _training_augment(tmp_path) is None

"""Head training data without TensorFlow: crop placement, mirrored targets, the threshold choice on frames."""

import numpy as np
import pytest

from edge.errors import ConfigError
from training.locate_data import LocateOptions, crop_windows, cut_crops
from training.locate_scales import choose_threshold


def test_vessel_crops_hold_the_vessel_centre_and_background_crops_stay_inside():
    rng = np.random.default_rng(0)
    boxes = np.array([[100, 200, 140, 220], [900, 50, 1000, 90]], np.float32)
    corners = crop_windows(boxes, (600, 1200), 256, per_frame=2, background=3, rng=rng)
    assert len(corners) == 5
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    for y, x in corners[:2]:
        inside = (centres[:, 0] >= x) & (centres[:, 0] < x + 256) & (centres[:, 1] >= y) & (centres[:, 1] < y + 256)
        assert inside.any()
    assert all(0 <= y <= 600 - 256 and 0 <= x <= 1200 - 256 for y, x in corners)


def test_mirrored_crops_carry_mirrored_targets(tmp_path, monkeypatch):
    from edge.datasets import LabeledFrame
    import training.locate_data as ld

    image = np.zeros((128, 256, 3), np.uint8)
    image[40:56, 20:60] = 255  # one bright hull, box x 20..60, y 40..56
    monkeypatch.setattr(ld, "scaled_frame", lambda f, s: (image, image, np.ones(4, np.float32)))
    frame = LabeledFrame("f.png", 256, 128, [[20, 40, 60, 56]], ("ship",), "cam", None)
    opts = LocateOptions(from_run="r", datasets=("d",), positive=("ship",), out="o", crop=128, per_frame=1,
                         background=0, jitter=0.0)
    crops, targets = cut_crops([frame] * 12, ("ship",), 1.0, opts, np.random.default_rng(1))
    for crop, t in zip(crops, targets):
        (i, j), = np.argwhere(t[..., 3] == 1)
        # the centre cell of the target lies on the bright hull of the (possibly mirrored) crop
        cy, cx = (i + 0.5) * 8, (j + 0.5) * 8
        assert crop[int(cy), int(cx)].max() == 255
        np.testing.assert_allclose(t[i, j, 1:3], np.log([40 / 8, 16 / 8]), rtol=1e-5)
    bright = crops.reshape(len(crops), -1, 3).max(axis=2).reshape(len(crops), 128, 128)
    left = [bool(b[:, :64].max()) for b in bright]
    assert any(left) and not all(left)  # some crops were mirrored


def test_threshold_is_the_lowest_level_within_the_false_box_allowance():
    gt = [np.array([[0, 0, 20, 20]], np.float32), np.array([[100, 100, 130, 120]], np.float32)]
    found = [
        (np.array([[2, 2, 18, 18], [300, 300, 320, 320]], np.float32), np.array([0.9, 0.4], np.float32)),
        (np.array([[105, 102, 128, 118], [500, 10, 520, 30]], np.float32), np.array([0.3, 0.2], np.float32)),
    ]
    choice = choose_threshold(found, gt, max_false_per_frame=0.5)
    # at 0.2 both false boxes count (1.0 per frame); above 0.2 one (0.5); above 0.4 none, but the
    # second vessel (0.3) is lost: the lowest level allowed is just above 0.2, where both vessels are found
    assert 0.2 < choice["threshold"] <= 0.3 and choice["recall"] == 1.0 and choice["false_per_frame"] == 0.5
    strict = choose_threshold(found, gt, max_false_per_frame=0.0)
    assert 0.4 < strict["threshold"] <= 0.9 and strict["recall"] == 0.5 and strict["met"]


def test_options_reject_a_crop_off_the_encoder_grid():
    with pytest.raises(ConfigError, match="multiple of 32"):
        LocateOptions(from_run="r", datasets=("d",), positive=("ship",), out="o", crop=200)


def test_zoomed_out_crops_show_the_vessel_at_the_smaller_scale(monkeypatch):
    import cv2

    from edge.datasets import LabeledFrame
    import training.locate_data as ld

    image = np.zeros((256, 512, 3), np.uint8)
    image[100:140, 60:260] = 255  # a 200x40 hull

    def scaled(frame, scale):
        fitted = cv2.resize(image, (int(512 * scale), int(256 * scale)), interpolation=cv2.INTER_AREA)
        return image, fitted, np.full(4, scale, np.float32)

    monkeypatch.setattr(ld, "scaled_frame", scaled)
    frame = LabeledFrame("f.png", 512, 256, [[60, 100, 260, 140]], ("ship",), "cam", None)
    opts = LocateOptions(from_run="r", datasets=("d",), positive=("ship",), out="o", crop=128, per_frame=2,
                         background=0, zoom_out=(0.5,))
    _, targets = cut_crops([frame], ("ship",), 1.0, opts, np.random.default_rng(0))
    assert len(targets) == 2  # one crop per vessel at the frame scale, and one at half of it
    widths = sorted(float(np.exp(t[..., 1][t[..., 3] == 1][0]) * 8) for t in targets)
    assert widths == pytest.approx([100.0, 200.0])
    with pytest.raises(ConfigError, match="pass_factors"):
        LocateOptions(from_run="r", datasets=("d",), positive=("ship",), out="o", pass_factors=(1.0,))

"""Camera-condition corruptions: deterministic, dtype and shape kept, stronger at every severity."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import has_module

pytestmark = pytest.mark.skipif(not has_module("cv2"), reason="needs OpenCV (edgecam[edge])")

NAMES = ("gaussian_noise", "shot_noise", "defocus_blur", "motion_blur", "fog", "rain", "droplets", "glare",
         "low_light", "contrast", "jpeg")


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A 72x96 frame with texture, edges and mid tones: sky, sea, a hull, a mast."""
    rng = np.random.default_rng(5)
    img = np.zeros((72, 96, 3), np.float32)
    img[:30] = (150, 170, 200)
    img[30:] = (40, 70, 110)
    img += rng.normal(0, 12, img.shape)
    img[40:52, 20:70] = (210, 205, 200)
    img[22:40, 44:47] = (30, 30, 30)
    img[55:60, ::6] = (250, 250, 250)  # whitecaps
    return np.clip(img, 0, 255).astype(np.uint8)


def test_the_list_is_the_documented_one():
    from edge.corruptions import CORRUPTIONS

    assert tuple(CORRUPTIONS) == NAMES
    for c in CORRUPTIONS.values():
        assert len(c.levels) == 5 and c.group in ("noise", "blur", "weather", "light", "digital")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_dtype_shape_seed_and_no_mutation(scene, name, severity):
    from edge.corruptions import corrupt

    before = scene.copy()
    a = corrupt(scene, name, severity, seed=3)
    b = corrupt(scene, name, severity, seed=3)
    assert a.dtype == np.uint8 and a.shape == scene.shape
    assert np.array_equal(a, b), "same seed, same image"
    assert np.array_equal(scene, before), "the input is not modified"
    assert (a != scene).any(), "every severity changes the image"


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "motion_blur", "fog", "rain", "droplets", "glare"])
def test_random_corruptions_depend_on_the_seed(scene, name):
    from edge.corruptions import corrupt

    assert not np.array_equal(corrupt(scene, name, 4, seed=1), corrupt(scene, name, 4, seed=2))


@pytest.mark.parametrize("name", NAMES)
def test_severity_zero_returns_the_input(scene, name):
    from edge.corruptions import corrupt

    out = corrupt(scene, name, 0, seed=9)
    assert np.array_equal(out, scene) and out is not scene


@pytest.mark.parametrize("name", NAMES)
def test_each_severity_moves_the_image_further(scene, name):
    """Mean absolute difference to the clean frame grows strictly from severity 0 to 5, for several seeds."""
    from edge.corruptions import corrupt

    for seed in (0, 1, 2):
        d = [np.abs(corrupt(scene, name, s, seed=seed).astype(np.int32) - scene).mean() for s in range(6)]
        assert all(b > a for a, b in zip(d, d[1:])), (name, seed, np.round(d, 2).tolist())


def test_blur_sizes_follow_px(scene):
    """A larger ``px`` (a bigger view of the same scene) blurs more pixels."""
    from edge.corruptions import corrupt

    small = np.abs(corrupt(scene, "defocus_blur", 3, px=0.2).astype(int) - scene).mean()
    large = np.abs(corrupt(scene, "defocus_blur", 3, px=1.0).astype(int) - scene).mean()
    assert large > small


@pytest.mark.parametrize("image, name, severity, px, error", [
    (np.zeros((8, 8, 3), np.float32), "fog", 1, None, "FrameError"),
    (np.zeros((8, 8), np.uint8), "fog", 1, None, "FrameError"),
    (np.zeros((8, 8, 3), np.uint8), "snow", 1, None, "ConfigError"),
    (np.zeros((8, 8, 3), np.uint8), "fog", 6, None, "ConfigError"),
    (np.zeros((8, 8, 3), np.uint8), "fog", True, None, "ConfigError"),
    (np.zeros((8, 8, 3), np.uint8), "fog", 2, 0.0, "ConfigError"),
    (np.zeros((8, 8, 3), np.uint8), "fog", 2, None, None),
])
def test_bad_input_is_refused_with_a_specific_error(image, name, severity, px, error):
    from edge import errors
    from edge.corruptions import corrupt

    if error is None:
        assert corrupt(image, name, severity, px=px).shape == (8, 8, 3)
    else:
        with pytest.raises(getattr(errors, error)):
            corrupt(image, name, severity, px=px)


@pytest.mark.parametrize("text, expected", [
    ("all", list(NAMES)), (None, list(NAMES)), ("fog, jpeg", ["fog", "jpeg"]), (["rain"], ["rain"]),
    ("fog,snow", None), ("", None),
])
def test_select(text, expected):
    from edge.corruptions import select
    from edge.errors import ConfigError

    if expected is None:
        with pytest.raises(ConfigError):
            select(text)
    else:
        assert select(text) == expected

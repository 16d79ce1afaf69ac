"""The training pipeline mixes classes from the first batch, whatever the folder order."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")


def test_first_batches_mix_classes(tmp_path):
    import cv2

    from training.data import from_folder, tf_dataset

    # 300 'rest' images then 100 'ship': folder order puts every ship last
    for c, n in (("aaa_rest", 300), ("ship", 100)):
        (tmp_path / c).mkdir()
        for i in range(n):
            cv2.imwrite(str(tmp_path / c / f"{i:04d}.png"), np.full((4, 4, 3), i % 255, np.uint8))
    d = from_folder(tmp_path, positive="ship")
    first = next(iter(tf_dataset(d, (8, 8), 32, training=True, augment="none")))
    share = float(first[1].numpy().mean())
    assert 0.05 < share < 0.6, share  # 25 % ships overall; a class-ordered batch would hold 0


@pytest.mark.parametrize("shape", [(32, 32), (120, 200)], ids=["upscaled", "downscaled"])
def test_training_sees_exactly_the_pixels_the_runtime_will(tmp_path, shape):
    """No train/serve skew: the tf.data pipeline resizes with the runtime's fit, to the bit."""
    import cv2

    from training.data import from_folder, load_rgb, tf_dataset

    rng = np.random.default_rng(0)
    for c in ("rest", "ship"):
        (tmp_path / c).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / c / f"{i}.png"), rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    d = from_folder(tmp_path, positive="ship")
    batches = [x.numpy() for x, _ in tf_dataset(d, (96, 96), 4, training=False)]
    got = np.concatenate(batches)
    assert got.dtype == np.float32 and got.shape == (6, 96, 96, 3)
    np.testing.assert_array_equal(got, load_rgb(list(d.paths), (96, 96)).astype(np.float32))

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

"""Input preparation: quantisation from the manifest, and the identity fast path for raw uint8 inputs."""

from __future__ import annotations

import numpy as np
import pytest

from edge.backends.base import _is_identity
from edge.manifest import Quantization


@pytest.mark.parametrize(
    "scale, zero_point, identity",
    [(1.0, 0, True), (0.9999982, 0, True), (1.0000019, 0, True), (1.01, 0, False), (1.0, 3, False), (0.5, 0, False)],
)
def test_identity_detection_matches_real_quantisation(scale, zero_point, identity):
    q = Quantization(scale, zero_point)
    x = np.arange(256, dtype=np.uint8)
    same = np.array_equal(q.quantize(x.astype(np.float32), np.dtype(np.uint8)), x)
    assert _is_identity(q) is identity
    assert same is identity


def test_quantize_dequantize_round_trip():
    q = Quantization(0.05, 10)
    x = np.array([-0.5, 0.0, 0.05, 1.0, 5.8], np.float32)  # inside (-128-10..127-10) * 0.05
    back = q.dequantize(q.quantize(x, np.dtype(np.int8)))
    np.testing.assert_allclose(back, x, atol=0.025)

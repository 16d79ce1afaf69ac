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


@pytest.mark.parametrize("src, dst", [((360, 640), (224, 224)), ((360, 640), (96, 96)), ((1080, 1920), (352, 640)),
                                      ((100, 100), (160, 160)), ((64, 64), (64, 64))])
def test_shrink_is_close_to_area_interpolation(src, dst):
    """The fast resize stays within a few grey levels of OpenCV's exact area average on a smooth scene."""
    import cv2

    from edge.preprocess import shrink

    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (src[0] // 8, src[1] // 8, 3), dtype=np.uint8), (src[1], src[0]),
                      interpolation=cv2.INTER_CUBIC)
    fast = shrink(base, dst[1], dst[0])
    exact = cv2.resize(base, (dst[1], dst[0]), interpolation=cv2.INTER_AREA if dst[0] < src[0] else cv2.INTER_LINEAR)
    assert fast.shape == (*dst, 3) and fast.dtype == np.uint8
    assert np.abs(fast.astype(int) - exact.astype(int)).mean() < 3.0


SMT_CPUINFO = "".join(
    f"processor\t: {p}\nphysical id\t: 0\ncore id\t\t: {p // 2}\nflags\t\t: avx2\n\n" for p in range(8)
)
ARM_CPUINFO = "".join(f"processor\t: {p}\nCPU part\t: 0xd0b\n\n" for p in range(4))


@pytest.mark.parametrize(
    "cpuinfo, usable, cores",
    [
        (SMT_CPUINFO, set(range(8)), 4),  # 8 hyper-threads on 4 cores
        (SMT_CPUINFO, {0, 1, 2}, 2),  # the affinity mask holds both threads of core 0 and one of core 1
        (ARM_CPUINFO, set(range(4)), 4),  # no core ids: every usable processor counts
        (ARM_CPUINFO, {2}, 1),
        ("", {0, 1}, 2),
    ],
)
def test_physical_cores(cpuinfo, usable, cores):
    from edge.machine import physical_cores

    assert physical_cores(cpuinfo, usable) == cores

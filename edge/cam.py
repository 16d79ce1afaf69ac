"""Class Activation Maps in numpy, so they run on the device.

The template method lives in :class:`BaseCAM`: a subclass supplies only the
channel weights; the base does the weighted sum, ReLU, normalisation and
resize. For a global-pooling + dense head the exact CAM is the last conv
feature map weighted by the dense weights (Zhou et al., 2016), which is what
:class:`DenseCAM` does with the weights the manifest carries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from edge.errors import FrameError


class BaseCAM(ABC):
    """Turn a feature map ``(h, w, K)`` into a heatmap for one class."""

    @abstractmethod
    def channel_weights(self, features: np.ndarray, class_index: int) -> np.ndarray:
        """Return ``(K,)`` weights for ``class_index``."""

    def raw(self, features: np.ndarray, class_index: int) -> np.ndarray:
        """Un-normalised map ``(h, w)``: the weighted channel sum (may be negative)."""
        features, w = self._checked(np.asarray(features, dtype=np.float32), class_index)
        return features @ w

    def _checked(self, features: np.ndarray, class_index: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``(h, w, K)`` map (a batch of one is unwrapped) and its ``(K,)`` weights, shapes checked."""
        if features.ndim == 4 and features.shape[0] == 1:
            features = features[0]
        if features.ndim != 3:
            raise FrameError(f"CAM expects an (h, w, K) feature map; received shape {features.shape}")
        w = self.channel_weights(features, class_index)
        if w.shape != (features.shape[-1],):
            raise FrameError(f"CAM weights: expected ({features.shape[-1]},); received {w.shape}")
        return features, w

    def __call__(self, features: np.ndarray, class_index: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
        """Heatmap in [0, 1], resized to ``size`` = (height, width) when given."""
        cam = normalise(self.raw(features, class_index))
        if size is not None:
            cam = resize_heatmap(cam, size)
        return cam


class DenseCAM(BaseCAM):
    """CAM for a global-pooling head followed by a dense layer of weights ``(K, C)``."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray | None = None) -> None:
        self.weights = np.asarray(weights, dtype=np.float32)
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float32)
        # one contiguous weight vector per class, and its sum (for int8 feature maps)
        self._per_class = np.ascontiguousarray(self.weights.T)
        self._sums = self._per_class.sum(axis=1, dtype=np.float64)

    def channel_weights(self, features: np.ndarray, class_index: int) -> np.ndarray:
        if not 0 <= class_index < self.weights.shape[1]:
            raise FrameError(f"class index: expected 0..{self.weights.shape[1] - 1}; received {class_index}")
        return self._per_class[class_index]

    def raw_quantized(self, features: np.ndarray, class_index: int, scale: float, zero_point: int) -> np.ndarray:
        """:meth:`raw` of a quantised feature map, without dequantising all of it.

        ``sum_k scale * (q_k - zp) * w_k`` is ``scale * (q @ w - zp * sum(w))``:
        one pass over the int8 map instead of three over a float copy.
        """
        q, w = self._checked(np.asarray(features), class_index)
        acc = q.astype(np.float32) @ w
        return (np.float32(scale) * (acc - np.float32(zero_point * self._sums[class_index]))).astype(np.float32)


def normalise(cam: np.ndarray) -> np.ndarray:
    """ReLU then divide by the maximum; an all-non-positive map becomes zeros."""
    cam = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0.0:
        return np.zeros_like(cam)
    return cam / np.float32(peak)


def resize_heatmap(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsample of an (h, w) map to ``size`` = (height, width).

    Uses the half-pixel-centre convention so a feature cell maps onto the
    centre of the image region it summarises (the same as OpenCV's
    ``INTER_LINEAR``); OpenCV when present, else the same arithmetic in numpy.
    """
    h, w = cam.shape
    H, W = int(size[0]), int(size[1])
    try:
        import cv2
    except ImportError:  # numpy path below gives the same result, only slower
        cv2 = None
    if cv2 is not None:
        return cv2.resize(np.ascontiguousarray(cam, np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    ys = np.clip((np.arange(H, dtype=np.float32) + 0.5) * (h / H) - 0.5, 0, h - 1)
    xs = np.clip((np.arange(W, dtype=np.float32) + 0.5) * (w / W) - 0.5, 0, w - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0)[:, None]
    wx = (xs - x0)[None, :]
    top = cam[y0][:, x0] * (1 - wx) + cam[y0][:, x1] * wx
    bottom = cam[y1][:, x0] * (1 - wx) + cam[y1][:, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def peak_location(cam: np.ndarray, size: tuple[int, int] | None = None) -> tuple[float, float]:
    """(x, y) of the maximum of a feature-grid CAM, to sub-cell precision, in ``size`` pixels.

    A feature cell of MobileNetV2 covers 32 input pixels, so the plain argmax
    can only say which cell; a parabola through the peak cell and its two
    neighbours, along each axis, estimates where between them the maximum
    lies (the usual sub-pixel peak interpolation). Coordinates map to
    ``size`` = (height, width) with the half-pixel-centre convention of
    :func:`resize_heatmap`; without ``size`` they stay in cells.
    """
    cam = np.asarray(cam, dtype=np.float64)
    gy, gx = np.unravel_index(int(np.argmax(cam)), cam.shape)
    x = gx + _parabola_offset(cam[gy, :], gx)
    y = gy + _parabola_offset(cam[:, gx], gy)
    if size is None:
        return float(x), float(y)
    h, w = cam.shape
    H, W = size
    return float((x + 0.5) * W / w - 0.5), float((y + 0.5) * H / h - 0.5)


def _parabola_offset(line: np.ndarray, i: int) -> float:
    if i == 0 or i == len(line) - 1:
        return 0.0
    left, mid, right = line[i - 1], line[i], line[i + 1]
    curvature = left - 2 * mid + right
    if curvature >= 0:  # flat or not a maximum: stay on the cell centre
        return 0.0
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))

"""The localisation head's targets and decoding, in numpy (no TensorFlow).

The head predicts, on a grid of ``stride``-pixel cells over the model input,
a vessel-centre heatmap (one Gaussian bump per box, its spread following the
box size, as in CenterNet) and the box size as ``log(side / stride)``.
:func:`render_targets` draws these from boxes for training;
:func:`decode` turns predicted maps back into boxes on the device: 3x3
max-pool peaks above a threshold, sub-cell refinement, size read at the peak,
then non-maximum suppression. :class:`HeadPass` and :func:`merge_passes`
let the runtime run the same artifact again on the frame downscaled, where
large vessels become head-sized, and join both passes' boxes.

Cell ``(i, j)`` covers input pixels ``[j * stride, (j + 1) * stride)`` and
its centre is ``((j + 0.5) * stride, (i + 0.5) * stride)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.errors import ConfigError

STRIDE = 8
SIGMA_PER_SIDE = 1.0 / 6.0  # a box's Gaussian spread: a sixth of its side, so the bump fades at the box edge
MIN_SIGMA_CELLS = 0.6  # narrower than this and a vessel's centre lights a single cell, hard to learn


@dataclass(frozen=True)
class HeadPass:
    """One more scale at which the runtime runs the artifact on the same frame, for the head's boxes only.

    The head learned vessels as large as a training crop shows them; a ferry
    at the frame scale is larger than that. On the frame downscaled by
    ``factor`` it is head-sized again. The pass's boxes are mapped back to
    frame pixels and merged with the frame-scale boxes (:func:`merge_passes`).

    Attributes:
        factor: share of the frame scale, in (0, 1) (0.5: a quarter of the pixels).
        threshold: centre-heatmap level for this pass's peaks, in (0, 1).
        min_side: boxes of this pass whose longer side is shorter (frame
            pixels) are dropped: the frame-scale pass finds small vessels better.
    """

    factor: float
    threshold: float
    min_side: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.factor < 1.0:
            raise ConfigError(f"head pass: expected a factor of the frame scale in (0, 1); received {self.factor}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"head pass: expected a threshold in (0, 1); received {self.threshold}")
        if not 0.0 <= self.min_side < np.inf:
            raise ConfigError(f"head pass: expected min_side >= 0 frame pixels; received {self.min_side}")

    def to_dict(self) -> dict:
        return {"factor": float(self.factor), "threshold": float(self.threshold), "min_side": float(self.min_side)}


def head_passes(spec: dict) -> tuple[HeadPass, ...]:
    """The extra passes of a manifest's ``extra.head`` (its ``scales`` list; none when absent).

    Example:
        >>> head_passes({"stride": 8, "threshold": 0.5, "scales": [{"factor": 0.5, "threshold": 0.4, "min_side": 48}]})
        (HeadPass(factor=0.5, threshold=0.4, min_side=48.0),)
    """
    listed = spec.get("scales", [])
    if not isinstance(listed, list):
        raise ConfigError(f"extra.head.scales: expected a list of {{factor, threshold, min_side}}; received {listed!r}")
    passes = []
    for item in listed:
        if not isinstance(item, dict) or not {"factor", "threshold"} <= set(item):
            raise ConfigError(f"extra.head.scales: expected {{factor, threshold[, min_side]}} items; received {item!r}")
        passes.append(HeadPass(float(item["factor"]), float(item["threshold"]), float(item.get("min_side", 0.0))))
    return tuple(passes)


def keep_larger(xyxy: np.ndarray, scores: np.ndarray, min_side: float) -> tuple[np.ndarray, np.ndarray]:
    """The boxes (and scores) whose longer side is at least ``min_side``."""
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    side = np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
    ok = side >= min_side
    return xyxy[ok], np.asarray(scores, np.float32).reshape(-1)[ok]


def merge_passes(found: list[tuple[np.ndarray, np.ndarray]], iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One set of boxes from several passes over a frame (all in frame pixels): NMS across passes, best first.

    Example:
        >>> a = (np.array([[0, 0, 10, 10]], np.float32), np.array([0.6], np.float32))
        >>> b = (np.array([[1, 1, 11, 11], [50, 50, 90, 90]], np.float32), np.array([0.9, 0.5], np.float32))
        >>> boxes, scores = merge_passes([a, b], 0.3)
        >>> boxes.tolist(), [round(float(s), 2) for s in scores]
        ([[1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 90.0, 90.0]], [0.9, 0.5])
    """
    boxes = [np.asarray(x, np.float32).reshape(-1, 4) for x, _ in found]
    scores = [np.asarray(s, np.float32).reshape(-1) for _, s in found]
    if any(len(b) != len(s) for b, s in zip(boxes, scores)):
        raise ConfigError("merge_passes: expected one score per box in every pass")
    xyxy = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    score = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    keep = nms(xyxy, score, iou_threshold)
    return xyxy[keep], score[keep]


@dataclass(frozen=True)
class LocateTargets:
    """What the head learns for one input: centre heatmap, box size and where the size counts.

    Attributes:
        heat: ``(h, w)`` float32 in [0, 1], 1 exactly at each box's centre cell.
        size: ``(h, w, 2)`` float32, ``log(width / stride), log(height / stride)``
            at centre cells, 0 elsewhere.
        mask: ``(h, w)`` float32, 1 at centre cells (the size loss is read there only).
    """

    heat: np.ndarray
    size: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        h, w = self.heat.shape
        if self.size.shape != (h, w, 2) or self.mask.shape != (h, w):
            raise ConfigError(f"targets: expected heat (h, w), size (h, w, 2), mask (h, w); received "
                              f"{self.heat.shape}, {self.size.shape}, {self.mask.shape}")


def _checked_boxes(boxes: object) -> np.ndarray:
    b = np.asarray(boxes, np.float32)
    b = b.reshape(0, 4) if b.size == 0 else b
    if b.ndim != 2 or b.shape[1] != 4:
        raise ConfigError(f"boxes: expected shape (N, 4) of x0, y0, x1, y1; received {b.shape}")
    if len(b) and not ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all():
        raise ConfigError("boxes: expected x1 > x0 and y1 > y0 for every box")
    return b


def grid_shape(input_hw: tuple[int, int], stride: int = STRIDE) -> tuple[int, int]:
    """Cells of the head's grid for an input of ``input_hw`` (the encoder pads 'same', so sides round up)."""
    return -(-int(input_hw[0]) // stride), -(-int(input_hw[1]) // stride)


def render_targets(boxes: object, input_hw: tuple[int, int], stride: int = STRIDE) -> LocateTargets:
    """Heatmap, size and mask targets for ``boxes`` (input pixels, x0, y0, x1, y1) on an input of ``input_hw``.

    Boxes whose centre lies outside the input are skipped; overlapping bumps
    keep the larger value.

    Example:
        >>> t = render_targets([[40, 40, 56, 72]], (128, 128))
        >>> t.heat.shape, float(t.heat.max()), np.argwhere(t.mask == 1).tolist()
        ((16, 16), 1.0, [[7, 6]])
    """
    b = _checked_boxes(boxes)
    h, w = grid_shape(input_hw, stride)
    heat = np.zeros((h, w), np.float32)
    size = np.zeros((h, w, 2), np.float32)
    mask = np.zeros((h, w), np.float32)
    ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    for x0, y0, x1, y1 in b:
        cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride  # in cells
        j, i = int(np.floor(cx)), int(np.floor(cy))
        if not (0 <= i < h and 0 <= j < w):
            continue
        sx = max(MIN_SIGMA_CELLS, (x1 - x0) / stride * SIGMA_PER_SIDE)
        sy = max(MIN_SIGMA_CELLS, (y1 - y0) / stride * SIGMA_PER_SIDE)
        bump = np.exp(-((xs - cx) ** 2) / (2 * sx * sx) - ((ys - cy) ** 2) / (2 * sy * sy))
        np.maximum(heat, bump, out=heat)
        heat[i, j] = 1.0
        size[i, j] = np.log([(x1 - x0) / stride, (y1 - y0) / stride])
        mask[i, j] = 1.0
    return LocateTargets(heat, size, mask)


def _max3x3(heat: np.ndarray) -> np.ndarray:
    import cv2

    # grey dilation is the 3x3 max-pool; OpenCV ignores the border outside the map
    return cv2.dilate(np.ascontiguousarray(heat, np.float32), np.ones((3, 3), np.uint8))


def _offset(left: float, mid: float, right: float) -> float:
    """Sub-cell offset of a peak from a parabola through three samples, within half a cell."""
    den = left - 2.0 * mid + right
    if not np.isfinite(den) or den >= 0:
        return 0.0
    return float(np.clip(0.5 * (left - right) / den, -0.5, 0.5))


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes (scores > 0) kept by greedy non-maximum suppression (OpenCV's), best first.

    A box is dropped when it overlaps a better kept one by an IoU above ``iou_threshold``.
    """
    import cv2

    if not len(xyxy):
        return np.zeros(0, np.int64)
    xywh = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]]).astype(np.float64)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), np.asarray(scores, np.float32).tolist(), 0.0, float(iou_threshold))
    return np.asarray(keep, np.int64).reshape(-1)


def decode(heat: np.ndarray, size: np.ndarray, threshold: float, stride: int = STRIDE,
           iou_threshold: float = 0.3, max_boxes: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, 4)`` in input pixels and their scores ``(N,)`` from the head's maps.

    Args:
        heat: ``(h, w)`` centre probabilities.
        size: ``(h, w, 2)`` ``log(side / stride)`` (width, height).
        threshold: lowest peak probability that makes a box.
        iou_threshold: boxes overlapping a better one by more are dropped.
        max_boxes: best peaks kept before suppression.

    Example:
        >>> t = render_targets([[40, 40, 56, 72]], (128, 128))
        >>> boxes, scores = decode(t.heat, t.size, 0.5)
        >>> len(boxes), bool(np.abs(boxes - [40, 40, 56, 72]).max() < 4)
        (1, True)
    """
    heat = np.asarray(heat, np.float32)
    size = np.asarray(size, np.float32)
    if heat.ndim != 2 or size.shape != (*heat.shape, 2):
        raise ConfigError(f"decode: expected heat (h, w) and size (h, w, 2); received {heat.shape} and {size.shape}")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"decode: expected a threshold in (0, 1); received {threshold}")
    peaks = (heat >= threshold) & (heat == _max3x3(heat))
    ii, jj = np.nonzero(peaks)
    if not len(ii):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    scores = heat[ii, jj]
    best = np.argsort(-scores, kind="stable")[:max_boxes]
    ii, jj, scores = ii[best], jj[best], scores[best]
    # a Gaussian bump is a parabola in log space, so its log fits the sub-cell centre exactly
    padded = np.pad(np.log(np.clip(heat, 1e-6, 1.0)), 1, mode="constant", constant_values=-np.inf)
    dx = np.array([_offset(padded[i + 1, j], padded[i + 1, j + 1], padded[i + 1, j + 2]) for i, j in zip(ii, jj)])
    dy = np.array([_offset(padded[i, j + 1], padded[i + 1, j + 1], padded[i + 2, j + 1]) for i, j in zip(ii, jj)])
    cx = (jj + 0.5 + dx) * stride
    cy = (ii + 0.5 + dy) * stride
    wh = np.exp(np.clip(size[ii, jj], -4.0, 6.0)) * stride
    xyxy = np.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2, cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], 1).astype(np.float32)
    keep = nms(xyxy, scores, iou_threshold)
    return xyxy[keep], scores[keep].astype(np.float32)

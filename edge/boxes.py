"""Boxes from a Class Activation Map, and merging of boxes split by tile seams.

A CAM is not a detector: a box here is the pixel extent of one connected
region where the heatmap is hot. That is coarse, but it runs in numpy + OpenCV
on a Raspberry Pi and says *where* the classifier looked.
"""

from __future__ import annotations

import numpy as np

from edge.checks import positive_int
from edge.errors import ConfigError, FrameError
from edge.results import Boxes

__all__ = ["boxes_from_heatmap", "boxes_from_cells", "cell_peaks", "merge_boxes"]


def boxes_from_heatmap(
    heatmap: np.ndarray,
    threshold: float = 0.5,
    min_area: int = 4,
    class_id: int = 0,
) -> Boxes:
    """Find one box per hot connected region of a heatmap.

    Pixels with ``heatmap >= threshold`` are grouped with 8-connectivity. Each
    group of at least ``min_area`` pixels gives the exact pixel box around it,
    ``x0, y0, x1, y1`` with ``x1`` and ``y1`` exclusive, scored by the highest
    heatmap value inside the group (not inside the box, which may hold part of
    a neighbour).

    Args:
        heatmap: ``(H, W)`` float array with values in [0, 1].
        threshold: hot-pixel threshold in (0, 1].
        min_area: smallest region kept, in pixels (>= 1); drops CAM speckle.
        class_id: class written into every box.

    Returns:
        Boxes sorted by score, highest first (ties keep raster order).

    Raises:
        FrameError: the heatmap is not a finite 2-D array.
        ConfigError: ``threshold`` or ``min_area`` is out of range.

    Example:
        >>> hm = np.zeros((8, 8), np.float32); hm[2:4, 3:6] = 0.9
        >>> boxes_from_heatmap(hm).xyxy.tolist()
        [[3.0, 2.0, 6.0, 4.0]]
    """
    import cv2  # imported here so numpy-only users of merge_boxes need no OpenCV

    hm = _checked_heatmap(heatmap, threshold, min_area)
    mask = (hm >= threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    xyxy, scores = [], []
    for i in range(1, n):  # label 0 is the background
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        crop = hm[y : y + h, x : x + w]
        scores.append(float(crop[labels[y : y + h, x : x + w] == i].max()))
        xyxy.append((x, y, x + w, y + h))
    if not xyxy:
        return Boxes.empty()
    order = np.argsort(-np.asarray(scores), kind="stable")
    return Boxes(
        np.asarray(xyxy, np.float32)[order],
        np.asarray(scores, np.float32)[order],
        np.full(len(order), int(class_id), np.int32),
    )


def _checked_heatmap(heatmap: np.ndarray, threshold: float, min_area: int) -> np.ndarray:
    """The heatmap as an array, after checking it and the box options (FrameError / ConfigError)."""
    hm = np.asarray(heatmap)
    if hm.ndim != 2 or hm.size == 0 or not np.issubdtype(hm.dtype, np.number):
        raise FrameError(f"expected a non-empty numeric (H, W) heatmap; received {hm.dtype} {hm.shape}")
    if not np.isfinite(hm).all():
        raise FrameError("expected a finite heatmap; received one with NaN or inf values")
    if not (0.0 < float(threshold) <= 1.0):
        raise ConfigError(f"threshold must be in (0, 1]; received {threshold!r}")
    positive_int("min_area", min_area)
    return hm


def cell_peaks(cells: np.ndarray, threshold: float) -> np.ndarray:
    """``(P, 2)`` (row, col) of the cells that are at least ``threshold`` and no lower than any of their 8 neighbours."""
    c = np.asarray(cells, np.float32)
    padded = np.pad(c, 1, constant_values=-np.inf)
    h, w = c.shape
    neighbours = np.stack([padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    is_peak = (c >= threshold) & (c >= neighbours.max(axis=0))
    return np.argwhere(is_peak)


def boxes_from_cells(cells: np.ndarray, heatmap: np.ndarray, threshold: float, min_area: int = 4,
                     class_id: int = 0) -> Boxes:
    """Boxes on an absolute heatmap, one per peak cell: two vessels side by side are two boxes.

    A hot region of ``heatmap`` (the cell map ``cells`` upsampled) that holds
    one peak cell gives one box, as :func:`boxes_from_heatmap` would. A region
    that holds several is split: each of its pixels goes to the nearest peak,
    and each peak's pixels give its box, scored by the peak's value.

    Args:
        cells: ``(h, w)`` per-cell probabilities (the feature grid).
        heatmap: ``(H, W)`` the same map upsampled, half-pixel centres (``resize_heatmap``).
        threshold: level in (0, 1] of a hot pixel and of a peak.
        min_area: smallest region or part kept, in pixels.
        class_id: class written into every box.

    Example:
        >>> c = np.zeros((2, 4), np.float32); c[0, 0] = c[0, 2] = 0.9
        >>> from edge.cam import resize_heatmap
        >>> len(boxes_from_cells(c, resize_heatmap(c, (64, 128)), 0.3))
        2
    """
    import cv2

    hm = _checked_heatmap(heatmap, threshold, min_area)
    cells = np.asarray(cells)
    peaks = cell_peaks(cells, threshold)
    h, w = cells.shape
    H, W = hm.shape
    py = (peaks[:, 0] + 0.5) * H / h - 0.5
    px = (peaks[:, 1] + 0.5) * W / w - 0.5
    mask = (hm >= threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    owner = labels[np.clip(np.round(py).astype(int), 0, H - 1), np.clip(np.round(px).astype(int), 0, W - 1)]
    xyxy, scores = [], []
    # A peak barely above the threshold can vanish in the upsampling (no pixel
    # sits exactly on a cell centre): it still gets a box, one cell wide, so a
    # frame the score flags always shows where.
    cy, cx = H / h / 2, W / w / 2
    for k in np.flatnonzero(owner == 0):
        xyxy.append((max(px[k] - cx, 0), max(py[k] - cy, 0), min(px[k] + cx + 1, W), min(py[k] + cy + 1, H)))
        scores.append(float(cells[peaks[k, 0], peaks[k, 1]]))
    for region in range(1, n):
        for box, score in _region_boxes(labels, stats[region], region, hm, np.flatnonzero(owner == region),
                                        (px, py), cells[peaks[:, 0], peaks[:, 1]], min_area):
            xyxy.append(box)
            scores.append(score)
    if not xyxy:
        return Boxes.empty()
    order = np.argsort(-np.asarray(scores), kind="stable")
    return Boxes(np.asarray(xyxy, np.float32)[order], np.asarray(scores, np.float32)[order],
                 np.full(len(order), int(class_id), np.int32))


def _region_boxes(labels: np.ndarray, stat: np.ndarray, region: int, hm: np.ndarray, mine: np.ndarray,
                  peak_xy: tuple[np.ndarray, np.ndarray], peak_values: np.ndarray, min_area: int) -> list[tuple[tuple, float]]:
    """``(box, score)`` of one hot region: its own box with one peak (or none), else one per peak's nearest pixels."""
    x0, y0, bw, bh, area = (int(v) for v in stat)
    if area < min_area:
        return []
    if len(mine) <= 1:  # one vessel: the region's own box, as boxes_from_heatmap gives it
        window = labels[y0 : y0 + bh, x0 : x0 + bw] == region
        return [((x0, y0, x0 + bw, y0 + bh), float(hm[y0 : y0 + bh, x0 : x0 + bw][window].max()))]
    # only the region's bounding window is searched, never the whole frame once per region
    ys, xs = np.nonzero(labels[y0 : y0 + bh, x0 : x0 + bw] == region)
    ys, xs = ys + y0, xs + x0
    px, py = peak_xy
    d = (xs[:, None] - px[mine][None]) ** 2 + (ys[:, None] - py[mine][None]) ** 2
    nearest = d.argmin(axis=1)
    out = []
    for k, peak in enumerate(mine):
        sel = nearest == k
        if sel.sum() >= min_area:
            out.append(((xs[sel].min(), ys[sel].min(), xs[sel].max() + 1, ys[sel].max() + 1), float(peak_values[peak])))
    return out


def merge_boxes(boxes: Boxes, iou_threshold: float = 0.0, gap: float | None = 1.0) -> Boxes:
    """Join boxes of one class that overlap or nearly touch, until none do.

    Two boxes are joined when their IoU is above ``iou_threshold`` or, unless
    ``gap`` is None, when the empty space between them is at most ``gap``
    pixels on both axes (boxes sharing an edge have a gap of 0, as ``x1`` is
    exclusive). Joining repeats until stable, because a union box can reach a
    third box neither part touched. A joined box is the union of its parts and
    keeps the highest score. Boxes of different classes are never joined.

    Args:
        boxes: boxes to merge.
        iou_threshold: IoU in [0, 1) above which boxes are joined.
        gap: largest gap in pixels (>= 0) that still joins, or None to join on IoU only.

    Returns:
        Merged boxes sorted by score, highest first.

    Raises:
        ConfigError: ``iou_threshold`` or ``gap`` is out of range.

    Example:
        >>> b = Boxes(np.array([[0, 0, 10, 5], [10, 1, 16, 6]]), np.array([0.7, 0.9]), np.array([0, 0]))
        >>> merge_boxes(b).xyxy.tolist()
        [[0.0, 0.0, 16.0, 6.0]]
    """
    if not (0.0 <= float(iou_threshold) < 1.0):
        raise ConfigError(f"iou_threshold must be in [0, 1); received {iou_threshold!r}")
    if gap is not None and not float(gap) >= 0.0:
        raise ConfigError(f"gap must be None or >= 0 pixels; received {gap!r}")
    if len(boxes) < 2:
        return boxes

    xyxy = boxes.xyxy.astype(np.float64)
    score = boxes.score.copy()
    cls = boxes.class_id.copy()
    while True:
        joined = _joined_pairs(xyxy, cls, float(iou_threshold), gap)
        if not joined.any():
            break
        groups = _components(joined)
        xyxy = np.array([[*xyxy[g, :2].min(0), *xyxy[g, 2:].max(0)] for g in groups])
        score = np.array([score[g].max() for g in groups], np.float32)
        cls = np.array([cls[g[0]] for g in groups], np.int32)
    order = np.argsort(-score, kind="stable")
    return Boxes(xyxy[order].astype(np.float32), score[order], cls[order])


def _joined_pairs(xyxy: np.ndarray, cls: np.ndarray, iou_threshold: float, gap: float | None) -> np.ndarray:
    """(N, N) bool matrix, True where two distinct boxes of one class should join."""
    x0, y0, x1, y1 = (xyxy[:, k] for k in range(4))
    iw = np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None])
    ih = np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = (x1 - x0) * (y1 - y0)
    union = area[:, None] + area[None] - inter
    join = inter / np.maximum(union, 1e-9) > iou_threshold
    if gap is not None:
        # a negative overlap on an axis is the empty space between the boxes on it
        join |= (-iw <= gap) & (-ih <= gap)
    join &= cls[:, None] == cls[None]
    np.fill_diagonal(join, False)
    return join


def _components(adjacent: np.ndarray) -> list[np.ndarray]:
    """Connected components of a small symmetric adjacency matrix, in first-index order."""
    n = len(adjacent)
    seen = np.zeros(n, bool)
    groups = []
    for start in range(n):
        if seen[start]:
            continue
        stack, members = [start], []
        seen[start] = True
        while stack:
            i = stack.pop()
            members.append(i)
            for j in np.flatnonzero(adjacent[i] & ~seen):
                seen[j] = True
                stack.append(int(j))
        groups.append(np.array(sorted(members)))
    return groups

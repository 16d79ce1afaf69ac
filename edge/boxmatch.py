"""Boxes against ground truth: IoU, centre hits, one-to-one matching and the pointing game.

The checks here (:func:`checked_boxes`, :func:`checked_point`, :func:`checked_iou`) are the ones
:mod:`edge.locmetrics` applies to every :class:`~edge.locmetrics.FrameOutcome`. Numpy only.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from edge import metrics as _frame_metrics
from edge.errors import ConfigError, DataError

__all__ = ["centre_hits", "checked_boxes", "checked_iou", "checked_point", "iou_matrix", "match", "pointing_hit"]


def checked_boxes(value: object, what: str) -> np.ndarray:
    """A read-only float64 ``(N, 4)`` copy of ``value``; DataError on any other shape or a flipped box."""
    arr = np.array(value, dtype=np.float64)  # a copy: the caller may reuse its buffer for the next frame
    if arr.ndim == 1 and arr.size == 0:
        arr = np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DataError(f"{what}: expected an (N, 4) array of x0, y0, x1, y1 boxes; received shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"{what}: expected finite coordinates; received NaN or inf")
    flipped = np.flatnonzero((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]))
    if len(flipped):
        raise DataError(f"{what}: expected x1 >= x0 and y1 >= y0; box {flipped[0]} is {arr[flipped[0]].tolist()}")
    arr.setflags(write=False)
    return arr


def checked_point(peak: object, what: str) -> tuple[float, float] | None:
    if peak is None:
        return None
    if len(np.shape(peak)) != 1 or np.shape(peak)[0] != 2 or not all(isinstance(v, numbers.Real) for v in peak):
        raise DataError(f"{what}: expected None or an (x, y) pair of numbers; received {peak!r}")
    x, y = float(peak[0]), float(peak[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise DataError(f"{what}: expected a finite (x, y); received {peak!r}")
    return x, y


def checked_iou(iou_threshold: float) -> float:
    if not isinstance(iou_threshold, numbers.Real) or not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(f"iou_threshold: expected a number in (0, 1]; received {iou_threshold!r}")
    return float(iou_threshold)


def _centres(b: np.ndarray) -> np.ndarray:
    return (b[:, :2] + b[:, 2:]) / 2.0


def _inside(points: np.ndarray, boxes: np.ndarray, grow: float = 0.0) -> np.ndarray:
    """``(N, M)`` bool: point n lies in box m grown by ``grow`` on each side (edges count as inside)."""
    x, y = points[:, 0, None], points[:, 1, None]
    return (x >= boxes[:, 0] - grow) & (x <= boxes[:, 2] + grow) & (y >= boxes[:, 1] - grow) & (y <= boxes[:, 3] + grow)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` with every box of ``b``; 0 where both are empty.

    Example:
        >>> iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]])).round(3).tolist()
        [[0.333]]
    """
    a, b = checked_boxes(a, "a"), checked_boxes(b, "b")
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def centre_hits(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(P, G)`` bool: the centre of gt box g lies inside pred box p, OR the centre of p lies inside g.

    Edges count as inside. Either direction counts because a CAM box is often
    much larger or much smaller than the vessel, with a tiny IoU, yet plainly
    on it.

    Example:
        >>> centre_hits(np.array([[0, 0, 100, 100]]), np.array([[40, 40, 50, 50]])).tolist()
        [[True]]
    """
    pred, gt = checked_boxes(pred, "pred"), checked_boxes(gt, "gt")
    return _inside(_centres(gt), pred).T | _inside(_centres(pred), gt)


def _greedy(order: np.ndarray, allowed: np.ndarray, iou: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """For each gt, the pred that claims it (-1: none). Preds claim in ``order``, each its best free gt."""
    owner = np.full(allowed.shape[1], -1, np.int64)
    for p in order:
        # best = most overlap, then nearest centre: a box over two vessels takes the one it sits on
        for g in np.lexsort((dist[p], -iou[p])):
            if allowed[p, g] and owner[g] < 0:
                owner[g] = p
                break
    return owner


def match(pred: np.ndarray, gt: np.ndarray, iou_threshold: float = 0.1, scores: np.ndarray | None = None) -> dict:
    """Match predicted boxes to ground truth one-to-one, greedily by score, under two criteria.

    Each pred, highest score first, claims among the free gts it matches the
    one it overlaps most (then the nearest); done once with IoU >=
    ``iou_threshold`` and once with ``centre_hits``. A pred is false when it
    matches no gt by either criterion: a duplicate on a claimed vessel points
    at a vessel, so it is not false here, though it costs box AP.

    Args:
        pred: ``(P, 4)`` predicted boxes.
        gt: ``(G, 4)`` ground-truth boxes.
        iou_threshold: IoU in (0, 1] at which a pred finds a gt.
        scores: ``(P,)`` pred scores; None means ``pred`` is already in score order.

    Returns:
        ``gt_found_iou``, ``gt_found_centre``: ``(G,)`` bool; ``gt_pred_iou``,
        ``gt_pred_centre``: ``(G,)`` index of the claiming pred or -1;
        ``pred_false``: ``(P,)`` bool.

    Example:
        >>> m = match(np.array([[0, 0, 100, 20]]), np.array([[0, 0, 40, 20], [60, 0, 100, 20]]))
        >>> m["gt_found_iou"].tolist(), m["pred_false"].tolist()
        ([True, False], [False])
    """
    pred, gt = checked_boxes(pred, "pred"), checked_boxes(gt, "gt")
    iou_threshold = checked_iou(iou_threshold)
    if scores is None:
        order = np.arange(len(pred))
    else:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(pred),):
            raise DataError(f"scores: expected shape ({len(pred)},), one per pred; received {scores.shape}")
        order = np.argsort(-scores, kind="stable")
    iou = iou_matrix(pred, gt)
    by_iou, by_centre = iou >= iou_threshold, centre_hits(pred, gt)
    dist = np.linalg.norm(_centres(pred)[:, None, :] - _centres(gt)[None, :, :], axis=2)
    owner_iou, owner_centre = _greedy(order, by_iou, iou, dist), _greedy(order, by_centre, iou, dist)
    return {"gt_found_iou": owner_iou >= 0, "gt_found_centre": owner_centre >= 0, "gt_pred_iou": owner_iou,
            "gt_pred_centre": owner_centre, "pred_false": ~(by_iou | by_centre).any(axis=1)}


def pointing_hit(peak: tuple[float, float] | None, gt: np.ndarray, tolerance: float = 0.0) -> bool:
    """True when ``peak`` lies inside any gt box grown by ``tolerance`` pixels on each side.

    No peak (None) or no gt box is a miss. :func:`edge.metrics.pointing_hit`
    with the Chebyshev distance, whose tolerance is that grown box.

    Example:
        >>> pointing_hit((52.0, 5.0), np.array([[0, 0, 40, 40]]), tolerance=15.0)
        True
    """
    return _frame_metrics.pointing_hit(checked_point(peak, "peak"), checked_boxes(gt, "gt"), tolerance, metric="chebyshev")

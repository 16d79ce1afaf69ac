"""Classification metrics and the pointing game in numpy, so Keras models and exported artifacts are scored by one tool."""

from __future__ import annotations

import math
import numbers

import numpy as np

from edge.errors import ConfigError, DataError


def _check(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if y_true.shape != y_score.shape:
        raise DataError(f"expected one score per label; received {y_true.shape} labels and {y_score.shape} scores")
    if not np.isin(y_true, (0, 1)).all():
        raise DataError("expected binary labels 0/1")
    return y_true, y_score


def roc_curve(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds (descending), ties merged."""
    y_true, y_score = _check(y_true, y_score)
    order = np.argsort(-y_score, kind="mergesort")
    s, t = y_score[order], y_true[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(t)[distinct]
    fps = (distinct + 1) - tps
    P, N = max(int(t.sum()), 0), max(len(t) - int(t.sum()), 0)
    tpr = np.r_[0.0, tps / P] if P else np.r_[0.0, np.zeros_like(tps, float)]
    fpr = np.r_[0.0, fps / N] if N else np.r_[0.0, np.zeros_like(fps, float)]
    thr = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thr


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve (trapezoids over merged ties); NaN with one class only."""
    y_true, y_score = _check(y_true, y_score)
    if y_true.min() == y_true.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true, y_score = _check(y_true, y_score)
    order = np.argsort(-y_score, kind="mergesort")
    s, t = y_score[order], y_true[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(t)[distinct]
    fps = (distinct + 1) - tps
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / max(int(t.sum()), 1)
    return precision, recall, s[distinct]


def average_precision(y_true, y_score) -> float:
    """PR AUC as average precision: sum over thresholds of (R_n - R_{n-1}) * P_n."""
    y_true, _ = _check(y_true, y_score)
    if y_true.sum() == 0:
        return float("nan")
    precision, recall, _ = precision_recall_curve(y_true, y_score)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _between(thr: np.ndarray, k: int) -> float:
    """Midway between the chosen score ``thr[k]`` and the next lower one.

    The decisions on the data the threshold was fitted on are the same as at
    ``thr[k]`` itself, but no image sits on the boundary: an exported model's
    score, 1e-7 off the Keras one, cannot flip a decision there.
    """
    return float((thr[k] + thr[k + 1]) / 2.0) if k + 1 < len(thr) else float(thr[k])


def youden_threshold(y_true, y_score) -> float:
    """Threshold that maximises TPR - FPR (Youden's J), placed between two scores (see ``_between``)."""
    fpr, tpr, thr = roc_curve(y_true, y_score)
    j = tpr - fpr
    best = int(np.argmax(j[1:])) + 1  # skip the +inf sentinel
    return _between(thr, best)


def threshold_for_recall(y_true, y_score, target: float) -> float:
    """Highest threshold whose recall reaches ``target``, placed between two scores."""
    _, tpr, thr = roc_curve(y_true, y_score)
    ok = np.nonzero(tpr >= target)[0]
    return _between(thr, int(ok[0])) if len(ok) else float(thr[-1])


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Confusion matrix, rows = truth, columns = prediction."""
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return m


def per_class(cm: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for i, name in enumerate(names):
        tp = cm[i, i]
        fp = cm[:, i].sum() - tp
        fn = cm[i, :].sum() - tp
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out[name] = {"precision": float(p), "recall": float(r), "f1": float(f1), "support": int(cm[i, :].sum())}
    return out


def binary_report(y_true, y_score, threshold: float | None = None, rule: str = "youden",
                  names: tuple[str, str] = ("negative", "positive"), target_recall: float = 0.95) -> dict:
    """Every metric edgecam reports for a binary task, at a threshold chosen by ``rule``.

    ``rule`` is ``youden``, ``recall`` (the highest threshold reaching
    ``target_recall``) or ``fixed`` (use ``threshold``). A given ``threshold``
    always wins.
    """
    y_true, y_score = _check(y_true, y_score)
    if threshold is None:
        if rule == "youden" and y_true.min() != y_true.max():
            threshold = youden_threshold(y_true, y_score)
        elif rule == "recall" and y_true.max() == 1:
            threshold = threshold_for_recall(y_true, y_score, target_recall)
        else:
            threshold, rule = 0.5, "fixed"
    else:
        rule = "given"
    y_pred = (y_score >= threshold).astype(np.int64)
    cm = confusion(y_true, y_pred, 2)
    recalls = [cm[i, i] / cm[i].sum() for i in range(2) if cm[i].sum()]
    return {
        "n": int(len(y_true)),
        "positives": int(y_true.sum()),
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": float(np.mean(recalls)),
        "roc_auc": roc_auc(y_true, y_score),
        "pr_auc": average_precision(y_true, y_score),
        "threshold": float(threshold),
        "threshold_rule": rule,
        "accuracy_at_0.5": float(((y_score >= 0.5) == y_true).mean()),
        "confusion": cm.tolist(),
        "per_class": per_class(cm, list(names)),
    }


def multiclass_report(y_true, probs, names: list[str]) -> dict:
    """Argmax metrics for a softmax model; one-vs-rest ROC AUC per class."""
    y_true = np.asarray(y_true, np.int64).reshape(-1)
    probs = np.asarray(probs, np.float64)
    y_pred = probs.argmax(1)
    cm = confusion(y_true, y_pred, len(names))
    recalls = [cm[i, i] / cm[i].sum() for i in range(len(names)) if cm[i].sum()]
    aucs = {n: roc_auc(y_true == i, probs[:, i]) for i, n in enumerate(names)}
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": float(np.mean(recalls)),
        "roc_auc": float(np.nanmean(list(aucs.values()))),
        "roc_auc_per_class": aucs,
        "confusion": cm.tolist(),
        "per_class": per_class(cm, names),
        "threshold_rule": "argmax",
    }


def multilabel_report(y_true, probs, names: list[str], rule: str = "youden", fallback_argmax: bool = False) -> dict:
    """Per-class thresholds; optionally "threshold, else argmax" so no image gets no label."""
    y_true = np.asarray(y_true, np.int64)
    probs = np.asarray(probs, np.float64)
    per = {n: binary_report(y_true[:, i], probs[:, i], rule=rule, names=(f"not_{n}", n)) for i, n in enumerate(names)}
    thr = np.array([per[n]["threshold"] for n in names])
    pred = probs >= thr
    if fallback_argmax:
        empty = ~pred.any(1)
        pred[empty, probs[empty].argmax(1)] = True
    return {
        "n": int(len(y_true)),
        "exact_match": float((pred == y_true.astype(bool)).all(1).mean()),
        "balanced_accuracy": float(np.mean([per[n]["balanced_accuracy"] for n in names])),
        "roc_auc": float(np.nanmean([per[n]["roc_auc"] for n in names])),
        "thresholds": thr.tolist(),
        "threshold_rule": rule + ("+argmax" if fallback_argmax else ""),
        "per_class": per,
    }


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (1 for two equal constant maps, 0 for unequal ones)."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    if den == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float((a * b).sum() / den)


def top_region_iou(a: np.ndarray, b: np.ndarray, fraction: float = 0.2) -> float:
    """IoU of the cells holding each map's top ``fraction`` of values."""
    k = max(1, int(round(a.size * fraction)))
    ma = np.zeros(a.size, bool)
    mb = np.zeros(b.size, bool)
    ma[np.argsort(-a.ravel(), kind="stable")[:k]] = True
    mb[np.argsort(-b.ravel(), kind="stable")[:k]] = True
    return float((ma & mb).sum() / (ma | mb).sum())


# --- the pointing game (Zhang et al., ECCV 2016): does the heatmap's peak fall on a true box? ----------------------
POINTING_METRICS = ("euclidean", "chebyshev")


def pointing_distance(peak: tuple[float, float] | None, boxes, metric: str = "euclidean") -> float:
    """Distance in pixels from ``peak`` (x, y) to the nearest of ``boxes`` (N, 4) ``x0, y0, x1, y1``; inf when none.

    Boxes are closed (a peak on an edge is inside, at distance 0). With
    ``metric="euclidean"`` the distance is the straight line to the nearest
    box point, so a tolerance is a disc around the peak, as in Zhang et al.;
    with ``"chebyshev"`` it is the larger of the x and y gaps, so a tolerance
    grows each box by that many pixels on every side. No peak (None) or no
    box gives inf: a miss at any tolerance.

    Example:
        >>> pointing_distance((52.0, 44.0), np.array([[0, 0, 40, 40]]))
        12.649110640673518
        >>> pointing_distance((52.0, 44.0), np.array([[0, 0, 40, 40]]), metric="chebyshev")
        12.0
    """
    if metric not in POINTING_METRICS:
        raise ConfigError(f"pointing metric: expected one of {POINTING_METRICS}; received {metric!r}")
    boxes = _pointing_boxes(boxes)
    if peak is None or not len(boxes):
        return float("inf")
    x, y = _pointing_peak(peak)
    dx = np.maximum.reduce([boxes[:, 0] - x, np.zeros(len(boxes)), x - boxes[:, 2]])
    dy = np.maximum.reduce([boxes[:, 1] - y, np.zeros(len(boxes)), y - boxes[:, 3]])
    gap = np.hypot(dx, dy) if metric == "euclidean" else np.maximum(dx, dy)
    return float(gap.min())


def pointing_hit(peak: tuple[float, float] | None, boxes, tolerance: float = 0.0, metric: str = "euclidean") -> bool:
    """True when ``peak`` lies in a box or within ``tolerance`` pixels of one (see :func:`pointing_distance`).

    Example:
        >>> pointing_hit((52.0, 5.0), np.array([[0, 0, 40, 40]]), tolerance=15.0)
        True
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not 0.0 <= tolerance < math.inf:
        raise ConfigError(f"tolerance: expected a finite number of pixels >= 0; received {tolerance!r}")
    return pointing_distance(peak, boxes, metric) <= tolerance


def _pointing_boxes(boxes) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DataError(f"boxes: expected an (N, 4) array of x0, y0, x1, y1; received shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError("boxes: expected finite coordinates; received NaN or inf")
    flipped = np.flatnonzero((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]))
    if len(flipped):
        raise DataError(f"boxes: expected x1 >= x0 and y1 >= y0; box {flipped[0]} is {arr[flipped[0]].tolist()}")
    return arr


def _pointing_peak(peak) -> tuple[float, float]:
    if np.shape(peak) != (2,) or not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in peak):
        raise DataError(f"peak: expected None or a finite (x, y) pair of numbers; received {peak!r}")
    return float(peak[0]), float(peak[1])

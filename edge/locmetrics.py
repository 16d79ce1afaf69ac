"""Localisation metrics for box-labelled frames: is the vessel found, and does the heatmap point at it?

The evaluation loop hands one ``FrameOutcome`` per real camera frame to
``LocalisationReport.add``; the report sums up frame scores (ROC AUC, AP), the
pointing game of the heatmap peak, box recall by vessel width, false boxes and
box AP, overall and per camera. Numpy only; matplotlib only inside ``plot_pr``. Matching boxes to
the ground truth (IoU, centre hits, pointing game) lives in :mod:`edge.boxmatch`.

Example:
    >>> report = LocalisationReport(tolerance_px=15.0)
    >>> report.add(FrameOutcome("f1", "bow", gt=np.array([[10, 10, 60, 30]]), score=0.9, flagged=True,
    ...                         peak=(30.0, 20.0), boxes=np.array([[12, 8, 58, 33]]), box_scores=np.array([0.8])))
    >>> report.summary()["overall"]["pointing_game"]
    1.0
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from edge import metrics as _frame_metrics
from edge.boxmatch import centre_hits, checked_boxes, checked_iou, checked_point, iou_matrix, match, pointing_hit
from edge.errors import ConfigError, DataError

__all__ = [
    "SIZE_BUCKETS", "FrameOutcome", "LocalisationReport", "average_precision", "box_average_precision",
    "centre_hits", "iou_matrix", "match", "pointing_hit", "precision_recall_curve", "roc_auc",
]

# (name, lowest width, highest width exclusive), by ground-truth box WIDTH in native pixels
SIZE_BUCKETS = (("<32", 0.0, 32.0), ("32-96", 32.0, 96.0), (">96", 96.0, math.inf))
_WIDE = ">=32"  # the recall figure for every vessel at least 32 px wide
_BUCKET_WORDS = {"<32": "width < 32 px", "32-96": "width 32-96 px", ">96": "width > 96 px", _WIDE: "width ≥ 32 px"}


@dataclass(frozen=True)
class FrameOutcome:
    """What the detector made of one box-labelled frame. Arrays are stored as read-only float64 copies.

    Attributes:
        frame_id: the frame's name, unique within its camera.
        camera: the camera that took it.
        gt: ``(G, 4)`` ground-truth vessel boxes, ``x0, y0, x1, y1`` in native pixels; ``G`` may be 0.
        score: frame-level vessel score in [0, 1].
        flagged: the decision at the model threshold.
        peak: ``(x, y)`` of the heatmap peak in native pixels, or None when there is no heatmap.
        boxes: ``(P, 4)`` predicted boxes, native pixels (none when the frame is not flagged).
        box_scores: ``(P,)`` one score per predicted box.
    """

    frame_id: str
    camera: str
    gt: np.ndarray
    score: float
    flagged: bool
    peak: tuple[float, float] | None
    boxes: np.ndarray
    box_scores: np.ndarray

    def __post_init__(self) -> None:
        for name in ("frame_id", "camera"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise DataError(f"FrameOutcome.{name}: expected a non-empty str; received {getattr(self, name)!r}")
        where, score = f"frame {self.camera}/{self.frame_id}", self.score
        boxes, box_scores = checked_boxes(self.boxes, f"{where} boxes"), np.array(self.box_scores, dtype=np.float64)
        if box_scores.shape != (len(boxes),) or not np.isfinite(box_scores).all():
            raise DataError(f"{where} box_scores: expected {len(boxes)} finite scores, one per box; "
                            f"received shape {box_scores.shape}")
        if isinstance(score, bool) or not isinstance(score, numbers.Real) or not 0.0 <= float(score) <= 1.0:
            raise DataError(f"{where} score: expected a number in [0, 1]; received {score!r}")
        if not isinstance(self.flagged, (bool, np.bool_)):
            raise DataError(f"{where} flagged: expected a bool; received {type(self.flagged).__name__}")
        box_scores.setflags(write=False)
        for name, value in (("gt", checked_boxes(self.gt, f"{where} gt")), ("boxes", boxes), ("box_scores", box_scores),
                            ("score", float(score)), ("flagged", bool(self.flagged)),
                            ("peak", checked_point(self.peak, f"{where} peak"))):
            object.__setattr__(self, name, value)


def _scores_labels(scores: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise DataError(f"expected one label per score; received {s.shape} scores and {y.shape} labels")
    if not np.isfinite(s).all():
        raise DataError("scores: expected finite numbers; received NaN or inf")
    if y.size and not np.isin(y, (0, 1)).all():  # also catches scores and labels passed the wrong way round
        raise DataError(f"labels: expected 0/1 or bool; received values {np.unique(y)[:5].tolist()}")
    return s, y.astype(bool)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic: P(positive scores above negative), ties count half.

    NaN when there is no positive or no negative.

    Example:
        >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        0.75
    """
    s, y = _scores_labels(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    starts = np.r_[0, np.flatnonzero(np.diff(s[order])) + 1]
    ends = np.r_[starts[1:], len(s)]
    ranks = np.empty(len(s))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # tied scores share their mean rank
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Step-wise AP, sum over thresholds of (R_n - R_(n-1)) * P_n, as sklearn's ``average_precision_score``.

    NaN with no positive.

    Example:
        >>> round(average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 4)
        0.8333
    """
    s, y = _scores_labels(scores, labels)
    # one implementation of PR for the whole package; edge.metrics takes (labels, scores) like sklearn
    return _frame_metrics.average_precision(y.astype(np.int64), s) if y.any() else float("nan")


def precision_recall_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and thresholds, one point per distinct score, thresholds descending.

    Unlike sklearn, no (recall 0, precision 1) end point is appended; recall is
    0 everywhere when there is no positive.

    Example:
        >>> p, r, t = precision_recall_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        >>> p.round(3).tolist(), r.tolist(), t.tolist()
        ([1.0, 0.5, 0.667, 0.5], [0.5, 0.5, 1.0, 1.0], [0.8, 0.4, 0.35, 0.1])
    """
    s, y = _scores_labels(scores, labels)
    if not len(s):
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return _frame_metrics.precision_recall_curve(y.astype(np.int64), s)


def box_average_precision(outcomes: Iterable[FrameOutcome], iou_threshold: float) -> float:
    """Detection AP over all frames, VOC all-point interpolation; NaN when no frame holds a gt box.

    Every predicted box of every frame is ranked by its score (ties keep frame
    order); each claims the free gt of its own frame with the highest IoU if
    that IoU reaches ``iou_threshold`` (true positive), otherwise it is a false
    positive, duplicates included. A gt is claimed at most once.

    Example:
        >>> o = FrameOutcome("f", "c", gt=np.array([[0, 0, 10, 10]]), score=1.0, flagged=True, peak=None,
        ...                  boxes=np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), box_scores=np.array([0.9, 0.8]))
        >>> box_average_precision([o], 0.5)
        1.0
    """
    iou_threshold, outcomes = checked_iou(iou_threshold), list(outcomes)
    if not all(isinstance(o, FrameOutcome) for o in outcomes):
        raise DataError(f"expected FrameOutcome items; received {sorted({type(o).__name__ for o in outcomes})}")
    n_gt = sum(len(o.gt) for o in outcomes)
    if n_gt == 0:
        return float("nan")
    frame = np.concatenate([np.full(len(o.boxes), k, np.int64) for k, o in enumerate(outcomes)])
    box = np.concatenate([np.arange(len(o.boxes)) for o in outcomes])
    score = np.concatenate([o.box_scores for o in outcomes])
    ious = [iou_matrix(o.boxes, o.gt) for o in outcomes]
    claimed = [np.zeros(len(o.gt), bool) for o in outcomes]
    tp = np.zeros(len(score), bool)
    for rank, j in enumerate(np.argsort(-score, kind="stable")):
        k = frame[j]
        free_iou = np.where(claimed[k], -1.0, ious[k][box[j]])
        if free_iou.size and free_iou.max() >= iou_threshold:
            claimed[k][int(np.argmax(free_iou))] = True
            tp[rank] = True
    mrec = np.r_[0.0, np.cumsum(tp) / n_gt, 1.0]
    mpre = np.r_[0.0, np.cumsum(tp) / np.arange(1, len(tp) + 1), 0.0]
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision at r = the best precision at any recall >= r
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def _share(k: int, n: int) -> float | None:
    return float(k) / n if n else None


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else float(x)  # JSON has no NaN: an undefined figure is null


def _count(found: np.ndarray) -> dict:
    return {"found": int(found.sum()), "total": int(found.size), "recall": _share(int(found.sum()), found.size)}


class LocalisationReport:
    """Accumulates ``FrameOutcome``s and sums them up, overall and per camera.

    Args:
        tolerance_px: how far (native pixels) outside a gt box the heatmap peak may be for ``pointing_game_tol``.
        iou_threshold: IoU in (0, 1] at which a predicted box finds a vessel, for recall and false boxes.

    Example:
        >>> report = LocalisationReport()
        >>> report.add(FrameOutcome("f1", "bow", gt=np.zeros((0, 4)), score=0.1, flagged=False, peak=None,
        ...                         boxes=np.zeros((0, 4)), box_scores=np.zeros(0)))
        >>> report.summary()["overall"]["clear_empty_frames"]
        1.0
    """

    def __init__(self, tolerance_px: float = 15.0, iou_threshold: float = 0.1):
        if not isinstance(tolerance_px, numbers.Real) or not 0.0 <= tolerance_px < math.inf:
            raise ConfigError(f"tolerance_px: expected a finite number of pixels >= 0; received {tolerance_px!r}")
        self.tolerance_px, self.iou_threshold = float(tolerance_px), checked_iou(iou_threshold)
        self._frames: dict[tuple[str, str], dict] = {}  # (camera, frame_id) -> per-frame figures, in add order

    def add(self, outcome: FrameOutcome) -> None:
        """Score one frame; DataError if the same camera/frame_id was added before (it would count twice)."""
        if not isinstance(outcome, FrameOutcome):
            raise DataError(f"expected a FrameOutcome; received {type(outcome).__name__}")
        key = (outcome.camera, outcome.frame_id)
        if key in self._frames:
            raise DataError(f"frame {outcome.camera}/{outcome.frame_id} was added twice; each frame counts once")
        m = match(outcome.boxes, outcome.gt, self.iou_threshold, scores=outcome.box_scores)
        # matched once here, so summary() stays cheap however often it is called
        self._frames[key] = {
            "outcome": outcome, "widths": outcome.gt[:, 2] - outcome.gt[:, 0],
            "point": pointing_hit(outcome.peak, outcome.gt),
            "point_tol": pointing_hit(outcome.peak, outcome.gt, self.tolerance_px),
            "iou": m["gt_found_iou"], "centre": m["gt_found_centre"], "false": int(m["pred_false"].sum()),
        }

    def summary(self) -> dict:
        """Every figure, JSON-ready: shares in [0, 1], None where undefined (e.g. ROC AUC with one class).

        Returns:
            ``settings``, ``overall`` and ``per_camera`` (camera -> the same keys as
            ``overall``): ``frames``, ``vessel_frames``, ``empty_frames``, ``roc_auc``,
            ``ap``, ``flagged_vessel_frames``, ``clear_empty_frames``, ``pointing_game``,
            ``pointing_game_tol``, ``counts`` (numerators of those shares), ``recall``
            (``{"iou"|"centre": {bucket: {"found", "total", "recall"}}}``, buckets
            ``<32``, ``32-96``, ``>96`` and ``>=32``), ``false_boxes``,
            ``false_boxes_per_frame``, ``false_boxes_per_empty_frame``, ``box_ap_30``, ``box_ap_50``.
        """
        frames = list(self._frames.values())
        cameras = sorted({f["outcome"].camera for f in frames})
        return {
            "settings": {"iou_threshold": self.iou_threshold, "tolerance_px": self.tolerance_px,
                         "size_buckets": [[n, lo, None if math.isinf(hi) else hi] for n, lo, hi in SIZE_BUCKETS]},
            "overall": _group(frames),
            "per_camera": {c: _group([f for f in frames if f["outcome"].camera == c]) for c in cameras},
        }

    def to_markdown(self, title: str) -> str:
        """A Markdown section: a table of every overall figure, then the same figures per camera when there are several.

        Example:
            >>> print(report.to_markdown("Harbour cameras, March"))  # doctest: +SKIP
        """
        s = self.summary()
        overall, cams = s["overall"], s["per_camera"]
        table = [(label, [value]) for label, value in self._figures(overall)]
        lines = [f"## {title}", "", f"{overall['frames']} frames from {len(cams)} camera(s) "
                 f"({', '.join(_cell(c) for c in cams) or 'none'}): {overall['vessel_frames']} with a vessel, "
                 f"{overall['empty_frames']} empty.", "", "| Figure | Value |", "| --- | --- |"]
        lines += [f"| {label} | {values[0]} |" for label, values in table]
        if len(cams) > 1:
            for g in cams.values():
                for row, (_, value) in zip(table, self._figures(g)):
                    row[1].append(value)
            lines += ["", "Per camera:", "", "| Figure | " + " | ".join(map(_cell, cams)) + " |",
                      "| --- |" + " --- |" * len(cams)]
            lines += [f"| {label} | " + " | ".join(values[1:]) + " |" for label, values in table]
        lines += ["", f"A predicted box finds a vessel when their IoU is at least {self.iou_threshold:g} (IoU rows) or "
                      "when the centre of either box lies inside the other (centre rows); each vessel is found at most "
                      "once. Width is the vessel box width in native pixels. A false box finds no vessel by either "
                      "rule. Peak and vessel rows count only frames with a vessel. n/a: not defined for these frames "
                      "(ROC AUC needs frames with and without a vessel).", ""]
        return "\n".join(lines)

    def _figures(self, g: dict) -> list[tuple[str, str]]:
        c, nv, ne = g["counts"], g["vessel_frames"], g["empty_frames"]
        rows = [("Frames (with a vessel / empty)", f"{g['frames']} ({nv} / {ne})"),
                ("Frame score ROC AUC, vessel vs empty", _num(g["roc_auc"])),
                ("Frame score average precision, vessel present", _num(g["ap"])),
                ("Vessel frames flagged", _pct(c["flagged_vessel"], nv)),
                ("Empty frames left unflagged", _pct(c["clear_empty"], ne)),
                ("Heatmap peak inside a vessel box", _pct(c["pointing"], nv)),
                (f"Heatmap peak within {self.tolerance_px:g} px of a vessel box", _pct(c["pointing_tol"], nv))]
        for crit, words in (("iou", f"IoU ≥ {self.iou_threshold:g}"), ("centre", "centre inside")):
            rows += [(f"Vessels found, {words}, {_BUCKET_WORDS[b]}", _pct(r["found"], r["total"]))
                     for b, r in g["recall"][crit].items()]
        return rows + [
            ("False boxes per frame (all frames / empty frames)",
             f"{_num(g['false_boxes_per_frame'], 2)} / {_num(g['false_boxes_per_empty_frame'], 2)}"),
            ("Box AP at IoU ≥ 0.3 / ≥ 0.5", f"{_num(g['box_ap_30'])} / {_num(g['box_ap_50'])}")]

    def plot_pr(self, path: str | os.PathLike[str]) -> None:
        """Frame-level precision-recall curve (vessel present) with the model's operating point.

        Written atomically (a temporary file, then ``os.replace``); the format follows the suffix, PNG without one.

        Example:
            >>> report.plot_pr("runs/eval/pr.png")  # doctest: +SKIP
        """
        from pathlib import Path

        from edge.atomic import atomic_path

        outcomes = [f["outcome"] for f in self._frames.values()]
        vessel = np.array([len(o.gt) > 0 for o in outcomes], bool)
        if not vessel.any():
            raise DataError(f"a precision-recall curve needs frames with a vessel; received {len(outcomes)} frames, "
                            "none with a vessel")
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError("plot_pr needs matplotlib: pip install 'edgecam[train]'") from exc
        scores = np.array([o.score for o in outcomes])
        flagged = np.array([o.flagged for o in outcomes], bool)
        # Figure + Agg canvas, not pyplot: no global backend switch, no figure left open in the caller's process
        fig = Figure(figsize=(5.5, 4.5), layout="constrained")
        ax = FigureCanvasAgg(fig).figure.add_subplot()
        p, r, _ = precision_recall_curve(scores, vessel)
        # the steps that average_precision sums, so the area shown is the AP reported
        ax.step(np.r_[0.0, r], np.r_[p[0], p], where="pre", lw=2, label=f"AP {average_precision(scores, vessel):.3f}")
        ax.axhline(vessel.mean(), color="grey", ls=":", lw=1, label=f"chance ({vessel.mean():.2f})")
        if flagged.any():
            hits = int((flagged & vessel).sum())
            ax.plot(hits / vessel.sum(), hits / flagged.sum(), "ko", label="model threshold")
        ax.set(xlim=(0, 1.02), ylim=(0, 1.05), xlabel="Recall (vessel frames flagged)",
               ylabel="Precision (flagged frames with a vessel)",
               title=f"Vessel present: {len(outcomes)} frames, {int(vessel.sum())} with a vessel")
        ax.legend(loc="lower left", fontsize=8)
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format=path.suffix[1:] or "png")


def _group(frames: list[dict]) -> dict:
    outcomes = [f["outcome"] for f in frames]
    vessel = np.array([len(o.gt) > 0 for o in outcomes], bool)
    flagged = np.array([o.flagged for o in outcomes], bool)
    scores = np.array([o.score for o in outcomes], np.float64)
    false = np.array([f["false"] for f in frames], np.int64)
    nv, ne = int(vessel.sum()), int((~vessel).sum())
    # empty frames hold no gt, so summing over every frame counts vessel frames only
    counts = {"flagged_vessel": int((flagged & vessel).sum()), "clear_empty": int((~flagged & ~vessel).sum()),
              "pointing": sum(f["point"] for f in frames), "pointing_tol": sum(f["point_tol"] for f in frames)}
    widths = np.concatenate([np.zeros(0)] + [f["widths"] for f in frames])
    recall = {}
    for crit in ("iou", "centre"):
        found = np.concatenate([np.zeros(0, bool)] + [f[crit] for f in frames])
        recall[crit] = {name: _count(found[(widths >= lo) & (widths < hi)]) for name, lo, hi in SIZE_BUCKETS}
        recall[crit][_WIDE] = _count(found[widths >= 32.0])
    return {
        "frames": len(frames), "vessel_frames": nv, "empty_frames": ne,
        "roc_auc": _finite(roc_auc(scores, vessel)), "ap": _finite(average_precision(scores, vessel)),
        "flagged_vessel_frames": _share(counts["flagged_vessel"], nv),
        "clear_empty_frames": _share(counts["clear_empty"], ne),
        "pointing_game": _share(counts["pointing"], nv), "pointing_game_tol": _share(counts["pointing_tol"], nv),
        "counts": counts, "recall": recall,
        "false_boxes": int(false.sum()), "false_boxes_per_frame": _share(int(false.sum()), len(frames)),
        "false_boxes_per_empty_frame": _share(int(false[~vessel].sum()), ne),
        "box_ap_30": _finite(box_average_precision(outcomes, 0.3)),
        "box_ap_50": _finite(box_average_precision(outcomes, 0.5)),
    }


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _pct(k: int, n: int) -> str:
    return "n/a (none)" if not n else f"{100.0 * k / n:.1f} % ({k} of {n})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a camera name must not split a Markdown table cell

"""Typed results of the runtime: boxes and per-frame results, shapes checked on creation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from edge.errors import FrameError


_EMPTY: "Boxes | None" = None


@dataclass(frozen=True)
class Boxes:
    """Axis-aligned boxes in frame pixels.

    Attributes:
        xyxy: ``(N, 4)`` float32, ``x0, y0, x1, y1`` with ``x1 > x0`` and ``y1 > y0``.
        score: ``(N,)`` float32, the heatmap peak inside each box, in [0, 1].
        class_id: ``(N,)`` int32, the class whose heatmap produced the box.
    """

    xyxy: np.ndarray
    score: np.ndarray
    class_id: np.ndarray

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4) if np.size(self.xyxy) else np.zeros((0, 4), np.float32)
        score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        class_id = np.asarray(self.class_id, dtype=np.int32).reshape(-1)
        if not (len(xyxy) == len(score) == len(class_id)):
            raise ValueError(
                f"Boxes expects xyxy (N, 4), score (N,), class_id (N,) of one length; "
                f"received {xyxy.shape}, {score.shape}, {class_id.shape}"
            )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "class_id", class_id)

    @classmethod
    def empty(cls) -> "Boxes":
        """No boxes; one shared, read-only instance (most frames have none)."""
        global _EMPTY
        if _EMPTY is None:
            arrays = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
            for a in arrays:
                a.setflags(write=False)
            _EMPTY = cls(*arrays)
        return _EMPTY

    def __len__(self) -> int:
        return len(self.xyxy)

    def to_list(self) -> list[dict]:
        """JSON-ready list: ``[{"xyxy": [...], "score": s, "class_id": c}, ...]``."""
        return [
            {"xyxy": [round(float(v), 1) for v in b], "score": round(float(s), 4), "class_id": int(c)}
            for b, s, c in zip(self.xyxy, self.score, self.class_id)
        ]


class FrameResult:
    """What the detector says about one frame.

    Attributes:
        scores: ``(C,)`` float32 probabilities, one per label.
        labels: the C label names, in the order of ``scores``.
        positive: ``(C,)`` bool, the decision per label (threshold from the manifest).
        heatmap: ``(H, W)`` float32 in [0, 1] at frame size, the CAM of the top class.
            It may be given as a function that computes it: upsampling the CAM
            to frame size costs more than the CAM itself, so it happens on
            first access (annotation, a sink) and never for a frame nobody draws.
        boxes: boxes found on the heatmap.
        timings_ms: per-stage wall time in milliseconds (``preprocess``, ``infer``, ``cam``, ``boxes``).
        peak: (x, y) in frame pixels of the CAM's maximum, to sub-cell precision.
    """

    __slots__ = ("scores", "labels", "positive", "boxes", "timings_ms", "peak", "_heatmap", "_make_heatmap")

    def __init__(
        self,
        scores: np.ndarray,
        labels: Sequence[str],
        positive: np.ndarray,
        heatmap: np.ndarray | Callable[[], np.ndarray],
        boxes: Boxes,
        timings_ms: dict[str, float] | None = None,
        peak: tuple[float, float] | None = None,
    ) -> None:
        self.labels = tuple(labels)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.positive = np.asarray(positive, dtype=bool).reshape(-1)
        if len(self.scores) != len(self.labels) or len(self.positive) != len(self.labels):
            raise FrameError(
                f"FrameResult expects one score and one decision per label ({len(self.labels)} labels); "
                f"received scores {self.scores.shape}, positive {self.positive.shape}"
            )
        self.boxes = boxes
        self.timings_ms = dict(timings_ms or {})
        self.peak = peak
        self._heatmap: np.ndarray | None = None
        self._make_heatmap: Callable[[], np.ndarray] | None = None
        if callable(heatmap):
            self._make_heatmap = heatmap
        else:
            self._heatmap = _checked_heatmap(heatmap)

    @property
    def heatmap(self) -> np.ndarray:
        if self._heatmap is None:
            assert self._make_heatmap is not None
            self._heatmap = _checked_heatmap(self._make_heatmap())
            self._make_heatmap = None
        return self._heatmap

    def __repr__(self) -> str:
        scores = ", ".join(f"{l}={s:.3f}" for l, s in zip(self.labels, self.scores))
        return f"FrameResult({scores}, positive={list(self.positive)}, boxes={len(self.boxes)}, peak={self.peak})"

    @property
    def top(self) -> int:
        """Index of the highest-scoring label."""
        return int(np.argmax(self.scores))

    def to_record(self) -> dict:
        """JSON-ready record without the heatmap (that goes to the video)."""
        return {
            "scores": {l: round(float(s), 5) for l, s in zip(self.labels, self.scores)},
            "positive": [l for l, p in zip(self.labels, self.positive) if p],
            "boxes": self.boxes.to_list(),
            "peak": None if self.peak is None else [round(float(v), 1) for v in self.peak],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }


def _checked_heatmap(heatmap: object) -> np.ndarray:
    out = np.asarray(heatmap, dtype=np.float32)
    if out.ndim != 2:
        raise FrameError(f"FrameResult expects an (H, W) heatmap; received shape {out.shape}")
    return out

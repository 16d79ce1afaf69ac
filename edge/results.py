"""Typed results of the runtime: boxes and per-frame results, shapes checked on creation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from edge.errors import FrameError


_EMPTY: "Boxes | None" = None

# version of the frame and event record layout (frames.jsonl, events.jsonl; docs/schemas/*.schema.json):
# raised when a field changes meaning or goes away, not when one is added
RECORD_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Boxes:
    """Axis-aligned boxes in frame pixels, named as ``supervision.Detections`` names them.

    Attributes:
        xyxy: ``(N, 4)`` float32, ``x0, y0, x1, y1`` with ``x1 > x0`` and ``y1 > y0``.
        confidence: ``(N,)`` float32, the heatmap peak inside each box, in [0, 1].
            ``score`` is the same array under its earlier name (kept as an alias,
            read-only), and frame records carry both keys.
        class_id: ``(N,)`` int32, the class whose heatmap produced the box.

    Example:
        >>> b = Boxes([[10, 20, 50, 60]], [0.9], [0])
        >>> float(b.confidence[0]) == float(b.score[0])
        True
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4) if np.size(self.xyxy) else np.zeros((0, 4), np.float32)
        score = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        class_id = np.asarray(self.class_id, dtype=np.int32).reshape(-1)
        if not (len(xyxy) == len(score) == len(class_id)):
            raise ValueError(
                f"Boxes expects xyxy (N, 4), confidence (N,), class_id (N,) of one length; "
                f"received {xyxy.shape}, {score.shape}, {class_id.shape}"
            )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", score)
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

    @property
    def score(self) -> np.ndarray:
        """The earlier name of :attr:`confidence` (same array)."""
        return self.confidence

    def __len__(self) -> int:
        return len(self.xyxy)

    def to_list(self) -> list[dict]:
        """JSON-ready list: ``[{"xyxy": [...], "confidence": s, "score": s, "class_id": c}, ...]``.

        ``score`` repeats ``confidence`` for readers of records written before it
        (docs/schemas/frame-record.schema.json).
        """
        out = []
        for b, s, c in zip(self.xyxy, self.confidence, self.class_id):
            conf = round(float(s), 4)
            out.append({"xyxy": [round(float(v), 1) for v in b], "confidence": conf, "score": conf, "class_id": int(c)})
        return out

    def to_supervision(self, labels: Sequence[str] | None = None) -> Any:
        """These boxes as ``supervision.Detections`` (``pip install supervision``; imported only here).

        Args:
            labels: the model's label names; given, ``data["class_name"]`` holds each box's label,
                which supervision's label annotators show.

        Example:
            >>> import supervision as sv  # doctest: +SKIP
            >>> sv.BoxAnnotator().annotate(frame, result.boxes.to_supervision(result.labels))  # doctest: +SKIP
        """
        sv = _supervision()
        data = {}
        if labels is not None:
            names = np.asarray(list(labels), dtype=object)
            if len(self) and int(self.class_id.max()) >= len(names):
                raise ValueError(f"Boxes.to_supervision expects a label for every class_id (max "
                                 f"{int(self.class_id.max())}); received {len(names)} labels")
            data["class_name"] = names[self.class_id].astype(str) if len(self) else np.zeros(0, str)
        return sv.Detections(xyxy=self.xyxy.copy(), confidence=self.confidence.copy(), class_id=self.class_id.copy(),
                             data=data)

    @classmethod
    def from_supervision(cls, detections: Any, labels: Sequence[str] | None = None) -> "Boxes":
        """Boxes from ``supervision.Detections`` (or an object with its ``xyxy``, ``confidence``, ``class_id``, ``data``).

        A missing ``class_id`` is taken from ``data["class_name"]`` through ``labels``.

        Raises:
            ValueError: no confidence, or no class ids and no class names that ``labels`` hold.
        """
        xyxy, conf = np.asarray(detections.xyxy), getattr(detections, "confidence", None)
        if conf is None:
            raise ValueError("Boxes.from_supervision expects Detections with confidence; received confidence=None")
        class_id = getattr(detections, "class_id", None)
        if class_id is None:
            names = (getattr(detections, "data", None) or {}).get("class_name")
            if names is None or labels is None:
                raise ValueError("Boxes.from_supervision expects Detections with class_id, or data['class_name'] and "
                                 "labels; received neither")
            index = {name: i for i, name in enumerate(labels)}
            unknown = sorted({str(n) for n in names} - set(index))
            if unknown:
                raise ValueError(f"Boxes.from_supervision: class names {unknown} are not among the labels {list(labels)}")
            class_id = np.array([index[str(n)] for n in names], np.int32)
        return cls(xyxy, conf, class_id)


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
        located: boxes of the localisation head (peaks of its centre heatmap),
            or None for an artifact without one. They stand beside the CAM's
            ``boxes``: the CAM explains the decision, the head locates vessels.
    """

    __slots__ = ("scores", "labels", "positive", "boxes", "timings_ms", "peak", "located", "_heatmap", "_make_heatmap")

    def __init__(
        self,
        scores: np.ndarray,
        labels: Sequence[str],
        positive: np.ndarray,
        heatmap: np.ndarray | Callable[[], np.ndarray],
        boxes: Boxes,
        timings_ms: dict[str, float] | None = None,
        peak: tuple[float, float] | None = None,
        located: Boxes | None = None,
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
        self.located = located
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

    def to_supervision(self) -> Any:
        """This frame's boxes as ``supervision.Detections`` with each box's label in ``data["class_name"]``."""
        return self.boxes.to_supervision(self.labels)

    def with_detections(self, detections: Any) -> "FrameResult":
        """The same frame with its boxes taken from ``supervision.Detections`` (filtered, tracked, merged there).

        Scores, decisions and the heatmap (computed or not yet) are shared, not copied.
        """
        boxes = Boxes.from_supervision(detections, self.labels)
        heatmap = self._heatmap if self._heatmap is not None else self._make_heatmap
        return FrameResult(self.scores, self.labels, self.positive, heatmap, boxes, self.timings_ms, self.peak,
                           located=self.located)

    def to_record(self) -> dict:
        """JSON-ready record without the heatmap (that goes to the video)."""
        record = {
            "scores": {l: round(float(s), 5) for l, s in zip(self.labels, self.scores)},
            "positive": [l for l, p in zip(self.labels, self.positive) if p],
            "boxes": self.boxes.to_list(),
            "peak": None if self.peak is None else [round(float(v), 1) for v in self.peak],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }
        if self.located is not None:
            record["located"] = self.located.to_list()
        return record


def _checked_heatmap(heatmap: object) -> np.ndarray:
    out = np.asarray(heatmap, dtype=np.float32)
    if out.ndim != 2:
        raise FrameError(f"FrameResult expects an (H, W) heatmap; received shape {out.shape}")
    return out


def _supervision() -> Any:
    try:
        import supervision
    except ModuleNotFoundError:
        raise ModuleNotFoundError("converting to supervision.Detections needs the supervision package; "
                                  "expected it from pip install supervision") from None
    return supervision

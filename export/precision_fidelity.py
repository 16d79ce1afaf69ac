"""What int8 does to an artifact's decisions and CAM, against its float model, and the targets it must reach."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.cam import DenseCAM
from edge.errors import ConfigError


@dataclass(frozen=True)
class Targets:
    """What ``auto`` must reach on the held-out calibration images, and the most float it may use.

    Attributes:
        agreement: share of images whose decisions match the float model.
        cam_r: mean per-image Pearson correlation of the CAM with the float model's.
        max_float_share: cap on the share of multiply-accumulates left in float.
        margin: an image is *near the boundary* when the float model's logit lies
            within this distance of the threshold's logit; flips there are expected.
        max_latency: cap on the artifact's median invoke as a ratio to the full
            int8 artifact's, timed through the runtime (``None``: not timed).
        latency_size: (h, w) the artifacts are timed at (``None``: the
            manifest's input size). Early layers run at the highest resolution,
            so their float share of time at frame size far exceeds their share of MACs.
    """

    agreement: float = 0.995
    cam_r: float = 0.97
    max_float_share: float = 0.25
    margin: float = 1.0
    max_latency: float | None = None
    latency_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("agreement", "cam_r", "max_float_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"int8 target {name}: expected a value in [0, 1]; received {v}")
        if self.margin < 0:
            raise ConfigError(f"int8 target margin: expected >= 0; received {self.margin}")
        if self.max_latency is not None and not self.max_latency > 0:
            raise ConfigError(f"int8 target max_latency: expected a ratio > 0; received {self.max_latency}")
        if self.latency_size is not None and (len(self.latency_size) != 2 or min(self.latency_size) < 1):
            raise ConfigError(f"int8 target latency_size: expected HxW, both >= 1; received {self.latency_size}")


@dataclass(frozen=True)
class Fidelity:
    """An artifact against its float model on the same images."""

    images: int
    agreement: float
    near: int  # images within the margin of the threshold
    agreement_far: float  # agreement on the others
    cam_r: float
    positives: int  # images the float model calls positive
    cam_r_positive: float
    top20_iou: float
    # a localisation head's centre heatmap against the float model's (mean per-image Pearson r); None without a head
    centres_r: float | None = None

    def meets(self, t: Targets) -> bool:
        return self.agreement >= t.agreement and self.cam_r >= t.cam_r

    def shortfall(self, t: Targets) -> float:
        """How far from the targets, each gap measured against the room the target leaves (0 when met)."""
        gap_a = max(0.0, t.agreement - self.agreement) / max(1e-6, 1.0 - t.agreement)
        gap_c = max(0.0, t.cam_r - self.cam_r) / max(1e-6, 1.0 - t.cam_r)
        return gap_a + gap_c

    def line(self) -> str:
        head = "" if self.centres_r is None else f", head centres r {self.centres_r:.4f}"
        return (f"agreement {self.agreement:.4f} (far {self.agreement_far:.4f}), "
                f"CAM r {self.cam_r:.4f} (positives {self.cam_r_positive:.4f}){head}")


@dataclass(frozen=True)
class Reference:
    """The float model's outputs on the held-out images."""

    scores: np.ndarray  # (N, C)
    cams: np.ndarray  # (N, h, w) raw CAM of the float model's top class
    classes: np.ndarray  # (N,) that class
    thresholds: np.ndarray  # (C,)
    task: str
    centres: np.ndarray | None = None  # (N, h, w, 1) a localisation head's centre heatmap, when there is one


def decisions(scores: np.ndarray, thresholds: np.ndarray, task: str) -> np.ndarray:
    if task == "multiclass":
        return scores.argmax(1)[:, None]
    return scores >= thresholds


def margins(scores: np.ndarray, thresholds: np.ndarray, task: str) -> np.ndarray:
    """Per image, the smallest distance in logits between a score and its decision boundary."""
    p = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    if task == "multiclass":
        top = np.sort(np.log(p), axis=1)
        return top[:, -1] - top[:, -2]
    t = np.clip(thresholds.astype(np.float64), 1e-7, 1 - 1e-7)
    logit = np.log(p / (1 - p))
    return np.abs(logit - np.log(t / (1 - t))).min(axis=1)


def raw_cams(cam: DenseCAM, features: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Raw CAM per image through the runtime's :class:`edge.cam.DenseCAM`."""
    return np.stack([cam.raw(f, int(c)) for f, c in zip(features, classes)])


def reference(cam: DenseCAM, scores: np.ndarray, features: np.ndarray, thresholds, task: str,
              centres: np.ndarray | None = None) -> Reference:
    scores = np.asarray(scores, np.float32)
    classes = scores.argmax(1)
    return Reference(scores, raw_cams(cam, features, classes), classes, np.asarray(thresholds, np.float32), task,
                     None if centres is None else np.asarray(centres, np.float32))


def fidelity(ref: Reference, cam: DenseCAM, scores: np.ndarray, features: np.ndarray, margin: float = 1.0,
             centres: np.ndarray | None = None) -> Fidelity:
    """Decisions and CAM of an artifact against the float reference (the CAM of the reference's class).

    With a localisation head, ``centres`` (the artifact's centre heatmaps) is
    correlated with the reference's per image: what a user sees as boxes.
    """
    from edge.metrics import pearson, top_region_iou

    scores = np.asarray(scores, np.float32)
    same = (decisions(scores, ref.thresholds, ref.task) == decisions(ref.scores, ref.thresholds, ref.task)).all(1)
    near = margins(ref.scores, ref.thresholds, ref.task) < margin
    cams = raw_cams(cam, features, ref.classes)
    r = np.array([pearson(a, b) for a, b in zip(cams, ref.cams)])
    iou = np.array([top_region_iou(a, b) for a, b in zip(cams, ref.cams)])
    pos = decisions(ref.scores, ref.thresholds, ref.task).any(1) if ref.task != "multiclass" else np.ones(len(r), bool)
    return Fidelity(
        images=int(len(scores)), agreement=float(same.mean()), near=int(near.sum()),
        agreement_far=float(same[~near].mean()) if (~near).any() else 1.0,
        cam_r=float(r.mean()), positives=int(pos.sum()),
        cam_r_positive=float(r[pos].mean()) if pos.any() else float("nan"), top20_iou=float(iou.mean()),
        centres_r=_centres_r(ref, centres),
    )


def _centres_r(ref: Reference, centres: np.ndarray | None) -> float | None:
    from edge.metrics import pearson

    if ref.centres is None or centres is None:
        return None
    if centres.shape != ref.centres.shape:
        raise ConfigError(f"head centres: expected the float model's shape {ref.centres.shape}; received {centres.shape}")
    return float(np.mean([pearson(a, b) for a, b in zip(centres, ref.centres)]))


TARGET_KEYS = {"agreement": "agreement", "cam_r": "cam_r", "max_float": "max_float_share", "margin": "margin",
               "max_latency": "max_latency", "latency_size": "latency_size"}


def parse_targets(text: str | None) -> Targets:
    """``agreement=0.995,cam_r=0.97,max_float=0.25,margin=1,max_latency=1.2,latency_size=1088x1920`` (any subset).

    Example:
        >>> parse_targets("cam_r=0.9,max_latency=1.2,latency_size=1088x1920").latency_size
        (1088, 1920)
    """
    if not text:
        return Targets()
    values: dict = {}
    for part in text.split(","):
        key, _, value = (x.strip() for x in part.partition("="))
        if key not in TARGET_KEYS or not value:
            raise ConfigError(f"--int8-targets: expected KEY=VALUE with KEY in {list(TARGET_KEYS)}; received {part!r}")
        try:
            if key == "latency_size":
                h, w = value.lower().split("x")
                values[TARGET_KEYS[key]] = (int(h), int(w))
            else:
                values[TARGET_KEYS[key]] = float(value)
        except ValueError:
            want = "HxW such as 1088x1920" if key == "latency_size" else "a number"
            raise ConfigError(f"--int8-targets: {key} expects {want}; received {value!r}") from None
    return Targets(**values)

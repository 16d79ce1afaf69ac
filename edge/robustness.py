"""Robustness of a model and its artifacts under camera conditions, in numpy, through the device runtime.

One *condition* is a corruption of :mod:`edge.corruptions` at one severity
(or an adversarial perturbation, made on the TensorFlow side by
:mod:`export.robustness`). Under each condition every model is scored on the
same corrupted images against its own clean run:

- balanced accuracy and ROC AUC at the manifest's threshold;
- decision agreement: the share of images whose decision did not change;
- CAM stability: the Pearson correlation of the corrupted image's heatmap
  (the raw CAM, at feature-cell resolution) with the clean image's, over all
  images and over those the model calls positive when clean.

On box-labelled frames (:func:`box_conditions`) each artifact also gets the
localisation figures of :class:`edge.locmetrics.LocalisationReport` (pointing
game, box recall) under each condition.

Example:
    >>> opts = RobustnessOptions(corruptions=("fog", "jpeg"), severities=(1, 3, 5))
    >>> opts.conditions()[:2]
    [('clean', 0), ('fog', 1)]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge import metrics as M
from edge.corruptions import CORRUPTIONS, REFERENCE_SIZE, SEVERITIES, corrupt, select
from edge.errors import ConfigError, DataError
from edge.corruptions import CLEAN, UNSEEN_BY_WEATHER

log = logging.getLogger("edgecam.robustness")


# images -> (scores (N,), raw CAMs (N, h, w)) for a binary model
ModelFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class RobustnessOptions:
    """What to measure.

    Attributes:
        corruptions: names from :data:`edge.corruptions.CORRUPTIONS` (default: all).
        severities: severities 1..5 to run (0, the clean image, always runs).
        seed: corruption noise; image ``i`` uses ``seed * 1_000_003 + i``.
        limit: at most this many images (class folders) or frames (box-labelled), a stratified draw.
        eps: FGSM step sizes in grey levels of 0..255 (class folders; Keras needed).
        pgd_steps: also PGD with this many steps at each ``eps`` (0: FGSM only).
        grid_severity: the severity the picture grid shows.
        backend, threads: for the artifacts' runtime (default: the manifest format's, one thread per core).
        formats: only the artifacts of these formats (default: every manifest found).
        baseline: an earlier ``robustness.json`` (say, of the model trained without
            ``--weather``) the report compares with.
        threshold: decision threshold for every model instead of its own (class
            folders; e.g. a box-trained model's crop threshold, where the manifest
            carries the whole-frame one).
    """

    corruptions: tuple[str, ...] = tuple(CORRUPTIONS)
    severities: tuple[int, ...] = SEVERITIES
    seed: int = 0
    limit: int | None = 1000
    eps: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    pgd_steps: int = 0
    grid_severity: int = 3
    backend: str | None = None
    threads: int | None = None
    formats: tuple[str, ...] | None = None
    baseline: str | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold: expected a value in (0, 1); received {self.threshold}")
        if self.baseline is not None and not Path(self.baseline).is_file():
            raise ConfigError(f"baseline: expected an earlier robustness.json; {self.baseline} does not exist")
        c = self.corruptions
        object.__setattr__(self, "corruptions", tuple(select(c if isinstance(c, str) else list(c))))
        sev = tuple(sorted({int(s) for s in self.severities}))
        if not sev or any(s not in SEVERITIES for s in sev) or any(isinstance(s, bool) for s in self.severities):
            raise ConfigError(f"severities: expected some of {list(SEVERITIES)}; received {self.severities!r}")
        object.__setattr__(self, "severities", sev)
        eps = tuple(float(e) for e in self.eps)
        if any(not 0.0 < e <= 64.0 for e in eps):
            raise ConfigError(f"eps: expected grey levels in (0, 64]; received {self.eps!r}")
        object.__setattr__(self, "eps", eps)
        if self.pgd_steps < 0:
            raise ConfigError(f"pgd_steps: expected >= 0; received {self.pgd_steps}")
        if self.limit is not None and self.limit < 2:
            raise ConfigError(f"limit: expected at least 2 images; received {self.limit}")
        if self.grid_severity not in SEVERITIES:
            raise ConfigError(f"grid_severity: expected 1..5; received {self.grid_severity}")

    def conditions(self) -> list[tuple[str, int]]:
        """(corruption, severity) pairs in run order, the clean images first."""
        return [(CLEAN, 0)] + [(c, s) for c in self.corruptions for s in self.severities]


def select_manifests(target: str | Path, formats: tuple[str, ...] | None) -> list[Path]:
    """The manifests of ``target`` (see :func:`edge.boxeval.manifests_of`), only ``formats`` when given."""
    from edge.boxeval import manifests_of
    from edge.manifest import load_manifest

    found = manifests_of(target)
    if not formats:
        return found
    by_format = {load_manifest(m, verify=False).format: m for m in found}
    missing = [f for f in formats if f not in by_format]
    if missing:
        raise ConfigError(f"formats: {target} holds {sorted(by_format)}; received {list(formats)}")
    return [by_format[f] for f in formats]


def image_seed(seed: int, index: int) -> int:
    return int(seed) * 1_000_003 + int(index)


def corrupt_batch(images: np.ndarray, name: str, severity: int, seed: int, px: float | None = None,
                  first_index: int = 0) -> np.ndarray:
    """Every image of an (N, H, W, 3) uint8 batch under one condition; image ``i`` seeded by its index."""
    if name == CLEAN or severity == 0:
        return images
    return np.stack([corrupt(img, name, severity, image_seed(seed, first_index + i), px) for i, img in enumerate(images)])


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of maps ``a[i]``, ``b[i]``; 1 for two equal flat maps, 0 for a flat one."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise DataError(f"CAM stability: expected maps of one shape; received {a.shape} and {b.shape}")
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    same = np.all(np.isclose(a, b, atol=1e-12), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(1) / den
    return np.where(den > 0, r, np.where(same, 1.0, 0.0))


def stratified_pick(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``limit`` items keeping each label's share (at least one of each)."""
    labels = np.asarray(labels)
    if limit is None or len(labels) <= limit:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    values, counts = np.unique(labels, return_counts=True)
    take = np.maximum(1, np.rint(limit * counts / len(labels)).astype(int))
    while take.sum() > max(limit, len(values)):  # rounding up may overshoot: trim the largest class
        take[int(np.argmax(take))] -= 1
    keep = [rng.permutation(np.flatnonzero(labels == v))[:k] for v, k in zip(values, take)]
    return np.sort(np.concatenate(keep))


def figures(targets: np.ndarray, scores: np.ndarray, threshold: float, clean_scores: np.ndarray,
            cams: np.ndarray, clean_cams: np.ndarray) -> dict:
    """One model under one condition against its own clean run (binary task).

    Example:
        >>> t = np.array([0, 1, 1, 0]); s = np.array([0.2, 0.9, 0.4, 0.1]); cams = np.random.rand(4, 3, 3)
        >>> f = figures(t, s, 0.5, s, cams, cams)
        >>> f["balanced_accuracy"], f["agreement"], f["cam_r"]
        (0.75, 1.0, 1.0)
    """
    y = np.asarray(targets).reshape(-1).astype(np.int64)
    s = np.asarray(scores, np.float64).reshape(-1)
    decided = s >= threshold
    clean = np.asarray(clean_scores, np.float64).reshape(-1) >= threshold
    if len(y) != len(s) or len(s) != len(clean):
        raise DataError(f"figures: expected one score per target; received {len(y)} targets, {len(s)} scores, "
                        f"{len(clean)} clean scores")
    pos, neg = y == 1, y == 0
    tpr = float(decided[pos].mean()) if pos.any() else float("nan")
    tnr = float((~decided[neg]).mean()) if neg.any() else float("nan")
    r = pearson_rows(cams, clean_cams)
    return {
        "balanced_accuracy": float(np.nanmean([tpr, tnr])),
        "recall": tpr,
        "specificity": tnr,
        "accuracy": float((decided == (y == 1)).mean()),
        "roc_auc": M.roc_auc(y, s),
        "agreement": float((decided == clean).mean()),
        "cam_r": float(r.mean()),
        "cam_r_positive": float(r[clean].mean()) if clean.any() else float("nan"),
    }


class ArtifactModel:
    """An exported artifact as a :data:`ModelFn`, through :class:`edge.detector.Detector` at a fixed input size.

    Scores and CAMs come the way the runtime makes them: its own fitting,
    casting and backend; the CAM straight from an int8 feature map where the
    artifact gives one; and for a cell-pooled model the score of the best
    cell read from that float map, as :meth:`edge.detector.Detector.finish`
    does (an int8 score output has steps of 1/256, too coarse near 1).
    """

    def __init__(self, manifest: str | Path, input_size: tuple[int, int], backend: str | None = None,
                 threads: int | None = None, batch: int = 16) -> None:
        from edge.detector import Detector, DetectorOptions
        from edge.manifest import Task, load_manifest

        self.manifest = load_manifest(manifest)
        if self.manifest.task != Task.BINARY:
            raise ConfigError(f"robustness: expected a binary (one-vs-rest) model; {manifest} is {self.manifest.task}")
        self.name = self.manifest.format
        self.threshold = float(self.manifest.thresholds[0])
        self.batch = batch
        self.detector = Detector.from_manifest(manifest, backend=backend, threads=threads, input_size=tuple(input_size),
                                               options=DetectorOptions(warmup=1))

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        det, be = self.detector, self.detector.backend
        scores, cams = [], []
        for i in range(0, len(images), self.batch):
            inf = det.infer([det.prepare(img) for img in images[i : i + self.batch]])
            scores.append(be.dequantize("scores", inf.scores)[:, 0])
            fq = be.output_quantization("features", inf.features)
            for f in inf.features:
                cams.append(det.cam.raw(f, 0) if fq is None else det.cam.raw_quantized(f, 0, fq.scale, fq.zero_point))
        cams = np.stack(cams)
        if det.absolute:
            best = cams.reshape(len(cams), -1).max(1).astype(np.float64) + float(det.cam.bias[0])
            return 1.0 / (1.0 + np.exp(-np.clip(best, -60.0, 60.0))), cams
        return np.concatenate(scores).astype(np.float64), cams

    def close(self) -> None:
        self.detector.close()

    def __enter__(self) -> "ArtifactModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_conditions(images: np.ndarray, targets: np.ndarray, models: dict[str, tuple[ModelFn, float]],
                   opts: RobustnessOptions, px: float | None = None,
                   on_grid: Callable[[str, int, np.ndarray, dict], None] | None = None) -> tuple[list[dict], dict]:
    """Every model under every condition of ``opts`` on the same images.

    ``models`` maps a name to (function, decision threshold). Returns the list
    of condition records and each model's clean outputs (scores, CAMs), which
    the adversarial sweep and the picture grid reuse. ``on_grid(name,
    severity, corrupted images, outputs)`` is called for the clean images and
    for every corruption at ``opts.grid_severity``.
    """
    clean: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    records = []
    for name, severity in opts.conditions():
        batch = corrupt_batch(images, name, severity, opts.seed, px)
        outputs = {m: fn(batch) for m, (fn, _) in models.items()}
        if name == CLEAN:
            clean = outputs
        rec = {"corruption": name, "severity": severity, "models": {}}
        for m, (scores, cams) in outputs.items():
            rec["models"][m] = figures(targets, scores, models[m][1], clean[m][0], cams, clean[m][1])
        records.append(rec)
        log.info("robustness: %s %d: %s", name, severity,
                 ", ".join(f"{m} {f['balanced_accuracy']:.3f}" for m, f in rec["models"].items()))
        if on_grid is not None and (severity == 0 or severity == opts.grid_severity):
            on_grid(name, severity, batch, outputs)
    return records, clean


def frame_px(train_input: tuple[int, int], frame_scale: float | None) -> float:
    """Pixels of a native frame per pixel of the 224-px reference view of a model trained on ``train_input`` crops.

    The model sees a frame resized by ``frame_scale``; a blur of ``b`` model
    pixels is ``b / frame_scale`` frame pixels. Blur sizes are thus set by what
    the model sees, as on a class-folder image at the training size.
    """
    return (min(train_input) / REFERENCE_SIZE) / float(frame_scale or 1.0)


def box_conditions(manifests: list[Path], frames: list, box_opts, opts: RobustnessOptions,
                   on_grid: Callable[..., None] | None = None) -> list[dict]:
    """Every artifact on whole box-labelled frames under every condition, through ``Detector.detect``.

    Each frame is corrupted at its native size (blur sizes from
    :func:`frame_px`), then run as ``edgecam run`` would run it. Per artifact
    and condition: the localisation summary, frame-level balanced accuracy
    (vessel frames flagged and empty frames left clear), decision agreement
    and CAM stability against the same artifact on the clean frame.
    """
    dets: dict = {}
    try:
        _load_box_detectors(manifests, box_opts, opts, dets)
        first = next(iter(dets.values()))
        px = frame_px(first.manifest.train_input_size or first.manifest.input_size, first.scale)
        grid_frame = next((i for i, f in enumerate(frames) if len(f.boxes_of(box_opts.positive))), 0)
        clean: dict[str, list] = {}
        records = []
        for name, severity in opts.conditions():
            show = on_grid if on_grid is not None and (severity == 0 or severity == opts.grid_severity) else None
            reports, seen = _box_pass(dets, frames, name, severity, px, box_opts, opts.seed, show, grid_frame)
            if name == CLEAN:
                clean = seen
            rec = {"corruption": name, "severity": severity,
                   "models": {k: _box_figures(reports[k].summary()["overall"], seen[k], clean[k]) for k in dets}}
            records.append(rec)
            log.info("robustness: %s %d: %s", name, severity,
                     ", ".join(f"{k} pointing {f['pointing_game'] or 0:.3f}" for k, f in rec["models"].items()))
        return records
    finally:
        for det in dets.values():
            det.close()


def _load_box_detectors(manifests: list[Path], box_opts, opts: RobustnessOptions, dets: dict) -> None:
    """One detector per artifact format into ``dets`` (filled as they load, so the caller closes what did)."""
    from edge.detector import Detector, DetectorOptions
    from edge.manifest import load_manifest

    for mp in manifests:
        m = load_manifest(mp)
        dets[m.format] = Detector.from_manifest(mp, backend=opts.backend, threads=opts.threads,
                                                options=DetectorOptions(scale=box_opts.scale, warmup=1))
    if box_opts.threshold is not None:
        for det in dets.values():
            det.thresholds = np.full_like(det.thresholds, box_opts.threshold)


def _box_pass(dets: dict, frames: list, name: str, severity: int, px: float, box_opts, seed: int,
              on_grid: Callable[..., None] | None, grid_frame: int) -> tuple[dict, dict]:
    """Every frame under one condition through every detector: a LocalisationReport and (score, flagged, small heatmap)s each."""
    import cv2

    from edge.imageio import read_image
    from edge.locmetrics import FrameOutcome, LocalisationReport

    reports = {k: LocalisationReport(tolerance_px=box_opts.tolerance_px) for k in dets}
    seen: dict[str, list] = {k: [] for k in dets}
    for i, frame in enumerate(frames):
        image = corrupt_batch(read_image(frame.path)[None], name, severity, seed, px, first_index=i)[0]
        gt = frame.boxes_of(box_opts.positive)
        outputs = {}
        for k, det in dets.items():
            r = det.detect(image)
            small = cv2.resize(r.heatmap, (64, max(1, int(round(64 * image.shape[0] / image.shape[1])))),
                               interpolation=cv2.INTER_AREA)
            seen[k].append((float(r.scores[0]), bool(r.positive[0]), small))
            reports[k].add(FrameOutcome(frame_id=Path(frame.path).name, camera=frame.camera, gt=gt,
                                        score=float(r.scores[0]), flagged=bool(r.positive[0]), peak=r.peak,
                                        boxes=r.boxes.xyxy, box_scores=r.boxes.score))
            outputs[k] = r
        if on_grid is not None and i == grid_frame:
            on_grid(name, severity, image[None],
                    {k: (np.array([float(r.scores[0])]), r.heatmap[None]) for k, r in outputs.items()}, gt)
    return reports, seen


def _box_figures(loc: dict, seen: list, clean: list) -> dict:
    """One artifact's figures under one condition, against its own clean pass."""
    flagged = np.array([f for _, f, _ in seen])
    was = np.array([f for _, f, _ in clean])
    # frame by frame: frames of other sizes give maps of other shapes
    r = np.array([pearson_rows(h[None], c[None])[0] for (_, _, h), (_, _, c) in zip(seen, clean)])
    shares = [v for v in (loc["flagged_vessel_frames"], loc["clear_empty_frames"]) if v is not None]
    return {
        "balanced_accuracy": float(np.mean(shares)) if shares else float("nan"),
        "roc_auc": loc["roc_auc"], "agreement": float((flagged == was).mean()),
        "cam_r": float(r.mean()), "cam_r_positive": float(r[was].mean()) if was.any() else float("nan"),
        "flagged_vessel_frames": loc["flagged_vessel_frames"], "clear_empty_frames": loc["clear_empty_frames"],
        "pointing_game": loc["pointing_game"], "pointing_game_tol": loc["pointing_game_tol"],
        "recall_iou_wide": loc["recall"]["iou"][">=32"]["recall"],
        "recall_centre_wide": loc["recall"]["centre"][">=32"]["recall"],
        "false_boxes_per_frame": loc["false_boxes_per_frame"],
    }


def float_first(names: list[str]) -> list[str]:
    """Model names with the float ones first (the reference the others are compared with)."""
    return sorted(names, key=lambda n: (n != "keras", "int8" in n or "dynamic" in n, n))


def machine_line() -> tuple[dict, str]:
    from edge.machine import machine_info

    m = machine_info()
    return m, f"{m['cpu']}, {m['cores_usable']} cores, {m['os']}, Python {m['python']}"


def box_robustness(target: str | Path, data: list[str], box_opts, opts: RobustnessOptions, out: str | Path) -> dict:
    """``edgecam robustness`` on box-labelled frames: every artifact of ``target``, no TensorFlow needed.

    ``box_opts`` is an :class:`edge.boxeval.BoxEvalOptions` (vessel classes,
    split, scale, threshold). At most ``opts.limit`` frames are used, keeping
    the share of frames with a vessel. Writes ``out/robustness.{json,md}``,
    the curves and ``grid.png`` (the first vessel frame under each corruption).
    """
    from edge.boxeval import frames_to_evaluate
    from edge.manifest import load_manifest
    from edge.robustreport import grid_panel, write_report

    frames = frames_to_evaluate(list(data), box_opts)
    vessel = np.array([len(f.boxes_of(box_opts.positive)) > 0 for f in frames])
    frames = [frames[i] for i in stratified_pick(vessel, opts.limit, opts.seed)]
    manifests = select_manifests(target, opts.formats)
    formats = {load_manifest(m).format: m for m in manifests}
    models = float_first(list(formats))
    panels: list[np.ndarray] = []

    def on_grid(name, severity, images, outputs, gt=None):
        title = "clean" if severity == 0 else f"{name}, severity {severity}"
        panels.append(grid_panel(title, images[0], outputs, models, 420, gt))

    records = box_conditions([formats[m] for m in models], frames, box_opts, opts, on_grid)
    machine, line = machine_line()
    doc = {"kind": "boxes", "headline": "pointing_game", "data": [str(d) for d in data], "split": box_opts.split, "split_name": box_opts.split_name,
           "items": len(frames), "positives": int(sum(len(f.boxes_of(box_opts.positive)) > 0 for f in frames)),
           "positive": list(box_opts.positive), "models": models,
           "thresholds": {m: box_opts.threshold or float(load_manifest(formats[m], verify=False).thresholds[0])
                          for m in models},
           "float_reference": next((m for m in models if "int8" not in m and "dynamic" not in m), models[0]),
           "seed": opts.seed, "severities": list(opts.severities), "corruptions": list(opts.corruptions),
           "machine": machine, "machine_line": line, "conditions": records}
    return write_report(doc, out, panels, opts.baseline)


__all__ = ["ArtifactModel", "box_robustness", "float_first", "select_manifests", "CLEAN", "RobustnessOptions", "UNSEEN_BY_WEATHER", "box_conditions", "corrupt_batch",
           "figures", "frame_px", "pearson_rows", "run_conditions", "stratified_pick"]

"""The detector: one frame in, scores + heatmap + boxes out, in numpy on the device."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.backends import Backend, BackendOptions, create_backend
from edge.cam import DenseCAM, normalise, peak_location, resize_heatmap
from edge.errors import ConfigError
from edge.manifest import HEAD_ROLES, Manifest, Task, load_manifest
from edge.preprocess import Placement, ResizeMode, check_frame, fit, scaled_input_size
from edge.results import Boxes, FrameResult


def _crop_boxes(boxes: Boxes, p: Placement) -> Boxes:
    """Boxes found on the whole input, shifted to the fitted content (letterbox padding removed)."""
    if not len(boxes) or (p.pad_top == 0 and p.pad_left == 0):
        return boxes
    shift = np.array([p.pad_left, p.pad_top, p.pad_left, p.pad_top], np.float32)
    lim = np.array([p.content_w, p.content_h, p.content_w, p.content_h], np.float32)
    return Boxes(np.clip(boxes.xyxy - shift, 0, lim), boxes.score, boxes.class_id)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))).astype(np.float32)


@dataclass(frozen=True)
class DetectorOptions:
    """How frames are fitted and boxes found; style only, no data.

    Attributes:
        resize: ``stretch`` (default) or ``letterbox``.
        box_threshold: heatmap level in [0, 1] above which pixels form boxes.
        min_box_area: smallest box in frame pixels.
        warmup: invokes at load, so the first real frame is not slow.
        scale: resize every frame by this factor (model pixels per frame
            pixel) instead of fitting it to one input size, so frames of any
            size run without reloading and a vessel looks as large as in
            training. ``None`` takes the manifest's ``frame_scale`` (set for
            models trained on crops of box-labelled frames), else the input
            size. Each side is rounded to a multiple of 32.
        head_threshold: centre-heatmap level for the localisation head's
            boxes (default: the manifest's, chosen on validation frames).
        head_passes: also run the head at the manifest's extra scales
            (``extra.head.scales``, :class:`edge.locate.HeadPass`), on frames
            resized by a scale only; False: one invoke per frame.
    """

    resize: ResizeMode = ResizeMode.STRETCH
    box_threshold: float = 0.5
    min_box_area: int = 16
    warmup: int = 2
    scale: float | None = None
    head_threshold: float | None = None
    head_passes: bool = True

    def __post_init__(self) -> None:
        if self.scale is not None and not 0.05 <= float(self.scale) <= 8.0:
            raise ConfigError(f"scale: expected a factor in [0.05, 8]; received {self.scale}")
        object.__setattr__(self, "resize", ResizeMode(self.resize))
        if not 0.0 < self.box_threshold < 1.0:
            raise ConfigError(f"box_threshold: expected a value in (0, 1); received {self.box_threshold}")
        if self.min_box_area < 1 or self.warmup < 0:
            raise ConfigError(f"min_box_area >= 1 and warmup >= 0 expected; received {self.min_box_area}, {self.warmup}")
        if self.head_threshold is not None and not 0.0 < self.head_threshold < 1.0:
            raise ConfigError(f"head_threshold: expected a value in (0, 1); received {self.head_threshold}")


@dataclass(frozen=True)
class PreparedFrame:
    """A frame made ready for inference by :meth:`Detector.prepare`.

    Attributes:
        frame: the original RGB uint8 frame (heatmaps and boxes map onto it).
        input: ``(1, h, w, 3)`` batch in the artifact's input dtype.
        placement: where the fitted image sits in the input (letterbox padding).
        preprocess_ms: what fitting and casting cost, on whichever thread did it.
    """

    frame: np.ndarray
    input: np.ndarray
    placement: Placement
    preprocess_ms: float


@dataclass(frozen=True)
class Inference:
    """The model's outputs for a batch of prepared frames, as the runtime gave them (see :meth:`Detector.infer`).

    Attributes:
        prepared: the frames, in batch order.
        scores: ``(N, C)`` scores, possibly still quantised.
        features: ``(N, h, w, K)`` last conv feature map, possibly still quantised.
        infer_ms: invoke time per frame.
        head: the localisation head's ``centres`` (N, h, w, 1) and ``sizes``
            (N, h, w, 2) by role, possibly still quantised; None without a head.
        head_passes: per frame, one ``(pass, placement, outputs)`` per extra
            head scale (:meth:`Detector.head_passes`).
    """

    prepared: tuple[PreparedFrame, ...]
    scores: np.ndarray
    features: np.ndarray
    infer_ms: float
    head: dict[str, np.ndarray] | None = None
    head_passes: tuple = ()


class Detector:
    """Scores, CAM heatmap and boxes for each frame, from an exported artifact.

    Example:
        >>> with Detector.from_manifest("runs/demo/export/model_int8.tflite.manifest.json") as det:  # doctest: +SKIP
        ...     result = det.detect(frame)  # frame: RGB uint8 (H, W, 3)
        ...     result.scores, result.boxes.xyxy
    """

    def __init__(self, backend: Backend, options: DetectorOptions | None = None) -> None:
        self.backend = backend
        self.manifest: Manifest = backend.manifest
        self.options = options or DetectorOptions()
        self.labels = self.manifest.labels
        self.thresholds = np.asarray(self.manifest.thresholds, np.float32)
        self.cam = DenseCAM(self.manifest.cam.weights, self.manifest.cam.bias)
        # A cell-pooled head scores the best cell: its heatmap is that cell map
        # through the output activation, on an absolute scale (an empty frame
        # stays dark), and boxes are the regions above the decision threshold.
        self.absolute = self.manifest.cam.pooling == "cell" and self.manifest.task != Task.MULTICLASS
        fixed = backend.options.input_size is not None
        scale = self.options.scale if self.options.scale is not None else self.manifest.extra.get("frame_scale")
        self.scale: float | None = None if (fixed and self.options.scale is None) else (float(scale) if scale else None)
        # a manifest-like object without the property (a test double) has no head
        self.has_head = bool(getattr(self.manifest, "has_head", False))
        self._pass_backends: list[Backend] = []
        self._closed = False
        h, w = self.input_size
        for _ in range(self.options.warmup):
            self.backend.infer(np.zeros((1, h, w, 3), np.uint8))

    @classmethod
    def from_manifest(
        cls,
        path: str | Path,
        backend: str | None = None,
        threads: int | None = None,
        providers: tuple[str, ...] | None = None,
        options: DetectorOptions | None = None,
        input_size: tuple[int, int] | None = None,
        spin_wait: bool = False,
    ) -> "Detector":
        """Load the artifact a manifest describes, after checking its sha256.

        ``input_size`` (h, w) overrides the manifest's size; artifacts exported
        by edgecam have free height and width, so any size runs.
        ``spin_wait``: see :class:`edge.backends.BackendOptions`.
        """
        manifest = load_manifest(path, verify=True)
        bopts = BackendOptions(threads=threads, providers=providers or ("CPUExecutionProvider",), input_size=input_size,
                               spin_wait=spin_wait)
        return cls(create_backend(manifest, backend, bopts), options)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.backend.input_size

    def input_size_for(self, frame: np.ndarray) -> tuple[int, int]:
        """The model input (h, w) a frame is fitted to: scaled from its own size when a scale is set."""
        if self.scale is None:
            return self.input_size
        return scaled_input_size(check_frame(frame).shape[:2], self.scale)

    def box_level(self, class_index: int = 0) -> float:
        """The heatmap level at which pixels form boxes, on whole frames and tiles alike.

        Absolute heatmaps (cell pooling) box at the class's decision
        threshold, so a box exists exactly where the score says "vessel";
        normalised CAMs use ``options.box_threshold``.
        """
        if self.absolute:
            return float(min(max(float(self.thresholds[class_index]), 1e-6), 1.0))
        return float(self.options.box_threshold)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Per-label decision: threshold for binary / multi-label, argmax for multi-class."""
        if self.manifest.task == Task.MULTICLASS:
            top = np.zeros(len(scores), bool)
            top[int(np.argmax(scores))] = True
            return top & (scores >= self.thresholds)
        return scores >= self.thresholds

    def prepare(self, frame: np.ndarray) -> PreparedFrame:
        """Fit one RGB uint8 frame to the model input and cast it: everything before inference.

        Thread-safe (it touches no runtime state), so the capture thread can
        prepare the next frame while this one is being inferred; ``edgecam
        run`` and ``edgecam bench`` do so. Raises FrameError for a bad frame.
        """
        t0 = time.perf_counter()
        image, placement = fit(frame, self.input_size_for(frame), self.options.resize)  # fit checks the frame
        batch = self.backend.prepare(image[None])
        return PreparedFrame(frame, batch, placement, (time.perf_counter() - t0) * 1e3)

    def detect(self, frame: np.ndarray) -> FrameResult:
        """Run one RGB uint8 frame through the model."""
        return self.detect_prepared(self.prepare(frame))

    def detect_prepared(self, prepared: PreparedFrame) -> FrameResult:
        """Run a frame :meth:`prepare` made ready (possibly on another thread)."""
        return self._detect([prepared])[0]

    def detect_batch(self, frames: list[np.ndarray]) -> list[FrameResult]:
        """Run several frames (e.g. tiles) in one batch."""
        return self._detect([self.prepare(f) for f in frames])

    def infer(self, prepared: list[PreparedFrame]) -> Inference:
        """Run the model on prepared frames, and nothing more: the part that needs the runtime.

        :meth:`finish` turns the outputs into results. It touches no runtime
        state, so ``edgecam run`` calls it on its output thread while this
        one runs the next frame.
        """
        n = len(prepared)
        if n == 0:
            raise ConfigError("Detector.infer: expected at least one prepared frame; received none")
        batch = prepared[0].input if n == 1 else np.concatenate([p.input for p in prepared])
        t1 = time.perf_counter()
        out = self.backend.infer_prepared(batch, dequantize=False)
        head = {r: out[r] for r in HEAD_ROLES} if self.has_head else None
        passes = tuple(self._run_head_passes(p) for p in prepared) if head is not None and self.head_passes else ()
        infer_ms = (time.perf_counter() - t1) * 1e3 / n
        return Inference(tuple(prepared), out["scores"], out["features"], infer_ms, head, passes)

    def _detect(self, prepared: list[PreparedFrame]) -> list[FrameResult]:
        return self.finish(self.infer(prepared))

    def finish(self, inference: Inference) -> list[FrameResult]:
        """Scores, decisions, CAM and boxes from what :meth:`infer` returned (thread-safe)."""
        prepared, infer_ms = inference.prepared, inference.infer_ms
        all_scores = self.backend.dequantize("scores", inference.scores)
        features = inference.features
        fq = self.backend.output_quantization("features", features)
        results = []
        for i, p in enumerate(prepared):
            t3 = time.perf_counter()
            scores = all_scores[i]
            cls_index = int(np.argmax(scores))
            if fq is None:
                raw = self.cam.raw(features[i], cls_index)
            else:
                raw = self.cam.raw_quantized(features[i], cls_index, fq.scale, fq.zero_point)
            if self.absolute:
                cam = _sigmoid(raw + self.cam.bias[cls_index])
                # the score is the best cell, read from the same float map
                # (an int8 score output has 1/256 steps, too coarse near 1)
                scores = np.array(scores, np.float32, copy=True)
                scores[cls_index] = float(cam.max())
            else:
                cam = normalise(raw)
            positive = self.decide(scores)
            peak = self._peak(raw, p)
            t4 = time.perf_counter()
            boxes = self._boxes(cam, cls_index, p) if positive.any() else Boxes.empty()
            t5 = time.perf_counter()
            timings = dict(preprocess=p.preprocess_ms, infer=infer_ms, cam=(t4 - t3) * 1e3, boxes=(t5 - t4) * 1e3)
            located = None
            if inference.head is not None:
                located = self._located(inference, i, p)
                timings["locate"] = (time.perf_counter() - t5) * 1e3
            heatmap = functools.partial(self._frame_heatmap, cam, p.frame.shape[:2], p)
            results.append(FrameResult(scores, self.labels, positive, heatmap, boxes, timings, peak, located))
        return results

    def _peak(self, raw: np.ndarray, prepared: PreparedFrame) -> tuple[float, float]:
        """The CAM maximum (x, y) in frame pixels, to sub-cell precision."""
        p = prepared.placement
        x, y = peak_location(raw, prepared.input.shape[1:3])
        return (x - p.pad_left + 0.5) / p.scale_x - 0.5, (y - p.pad_top + 0.5) / p.scale_y - 0.5

    def _frame_heatmap(self, cam: np.ndarray, frame_hw: tuple[int, int], prepared: PreparedFrame) -> np.ndarray:
        """The CAM upsampled onto the frame (called lazily, through FrameResult.heatmap)."""
        if self.options.resize is ResizeMode.STRETCH:
            return resize_heatmap(cam, frame_hw)
        from edge.preprocess import unplace

        return unplace(resize_heatmap(cam, prepared.input.shape[1:3]), prepared.placement, frame_hw)

    def _boxes(self, cam: np.ndarray, cls_index: int, prepared: PreparedFrame) -> Boxes:
        """Boxes on the CAM at model-input resolution, scaled to frame pixels.

        The input is the finest resolution the model saw; upsampling the map
        further to frame size adds pixels, not information, and costs
        several times more for a large frame.
        """
        from edge.boxes import boxes_from_heatmap

        p = prepared.placement
        full = resize_heatmap(cam, prepared.input.shape[1:3])
        min_area = max(1, int(round(self.options.min_box_area * p.scale_x * p.scale_y)))
        if self.absolute:
            from edge.boxes import boxes_from_cells

            # one box per peak cell, so vessels moored side by side stay apart
            found = _crop_boxes(boxes_from_cells(cam, full, self.box_level(cls_index), min_area, cls_index), p)
        else:
            hm = full[p.pad_top : p.pad_top + p.content_h, p.pad_left : p.pad_left + p.content_w]
            found = boxes_from_heatmap(hm, self.options.box_threshold, min_area, cls_index)
        if not len(found):
            return found
        H, W = prepared.frame.shape[:2]
        scale = np.array([1 / p.scale_x, 1 / p.scale_y, 1 / p.scale_x, 1 / p.scale_y], np.float32)
        xyxy = np.minimum(found.xyxy * scale, np.array([W, H, W, H], np.float32))
        return Boxes(xyxy, found.score, found.class_id)

    @property
    def head_threshold(self) -> float:
        """The centre-heatmap level at which the localisation head reports a vessel (manifest, or the option)."""
        if self.options.head_threshold is not None:
            return float(self.options.head_threshold)
        return float(self.manifest.extra["head"]["threshold"])

    @functools.cached_property
    def head_passes(self) -> tuple:
        """The head's extra scales (:class:`edge.locate.HeadPass`) this detector runs: none unless frames are scaled."""
        from edge.locate import head_passes

        if not (self.has_head and self.options.head_passes and self.scale is not None):
            return ()
        return head_passes(self.manifest.extra["head"])

    def _run_head_passes(self, prepared: PreparedFrame) -> tuple:
        """Invoke the artifact on the frame at each extra head scale, each on its own runtime (no re-planning)."""
        runs = []
        for k, hp in enumerate(self.head_passes):
            if k == len(self._pass_backends):
                self._pass_backends.append(create_backend(self.manifest, self.backend.key, self.backend.options))
            image, placement = fit(prepared.frame, scaled_input_size(prepared.frame.shape[:2], self.scale * hp.factor),
                                   self.options.resize)
            out = self._pass_backends[k].infer_prepared(self._pass_backends[k].prepare(image[None]), dequantize=False)
            runs.append((hp, placement, {r: out[r] for r in HEAD_ROLES}))
        return tuple(runs)

    def _located(self, inference: Inference, i: int, prepared: PreparedFrame) -> Boxes:
        """The head's boxes on one frame, in frame pixels: its frame-scale peaks and those of its extra passes, merged."""
        from edge.locate import keep_larger, merge_passes

        frame_hw = prepared.frame.shape[:2]
        found = [self._decoded(inference.head, i, prepared.placement, frame_hw, self.head_threshold)]
        for hp, placement, outputs in (inference.head_passes[i] if inference.head_passes else ()):
            found.append(keep_larger(*self._decoded(outputs, 0, placement, frame_hw, hp.threshold), hp.min_side))
        xyxy, score = merge_passes(found, float(self.manifest.extra["head"].get("nms_iou", 0.3))) if len(found) > 1 \
            else found[0]
        return Boxes(xyxy, score, np.zeros(len(xyxy), np.int32)) if len(xyxy) else Boxes.empty()

    def _decoded(self, head: dict, i: int, p: Placement, frame_hw: tuple[int, int], threshold: float):
        """(boxes in frame pixels, scores) of one pass: peaks of its centre heatmap, sized by its size map."""
        from edge.locate import decode

        spec = self.manifest.extra["head"]
        centres = self.backend.dequantize("centres", head["centres"][i : i + 1])[0, ..., 0]
        sizes = self.backend.dequantize("sizes", head["sizes"][i : i + 1])[0]
        xyxy, score = decode(centres, sizes, threshold, int(spec["stride"]), float(spec.get("nms_iou", 0.3)))
        H, W = frame_hw
        shift = np.array([p.pad_left, p.pad_top, p.pad_left, p.pad_top], np.float32)
        scale = np.array([p.scale_x, p.scale_y, p.scale_x, p.scale_y], np.float32)
        xyxy = np.clip((xyxy - shift) / scale, 0, np.array([W, H, W, H], np.float32))
        ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        return xyxy[ok], score[ok]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.backend.close()
            for b in self._pass_backends:
                b.close()

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

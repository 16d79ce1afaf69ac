"""``edgecam demo``: the whole path on built-in maritime scenes, in one command.

1. generate still scenes (folder per class) and a clip with per-frame ship boxes;
2. train a MobileNetV2 classifier (global max pooling + dense logit);
3. export TFLite full-int8 (calibrated on generated images) and ONNX float32,
   each with its feature map as a named output and a manifest;
4. verify both against Keras, then run the edge runtime over the clip with the
   int8 model, writing ``video.mp4``, ``frames.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge import atomic
from edge.checks import positive_int
from edge.metrics import pointing_distance

log = logging.getLogger("edgecam.demo")


@dataclass(frozen=True)
class DemoOptions:
    """Options of the demo.

    Attributes:
        out: output folder.
        seed: seeds the scenes, the clip and training.
        weights: ``none`` (default: works offline), ``imagenet`` or a path to a no-top .h5.
        epochs: training epochs (default 12; 1 with ``quick``).
        frames: clip length (default 300; 24 with ``quick``).
        quick: a tiny configuration that runs the same steps in well under a minute (tests).
    """

    out: str = "runs/demo"
    seed: int = 0
    weights: str | None = "none"
    epochs: int | None = None
    frames: int | None = None
    quick: bool = False

    def __post_init__(self) -> None:
        positive_int("epochs", self.epochs, allow_none=True)
        positive_int("frames", self.frames, allow_none=True)

    @property
    def plan(self) -> dict:
        if self.quick:
            return {"n_train": 64, "n_val": 32, "train_size": (64, 64), "clip_size": (96, 160), "epochs": self.epochs or 1,
                    "frames": self.frames or 24, "clip_wh": (640, 360), "calib": 32}
        # The clip runs at 1.5x its pixel size (544x960 for 360x640 frames): a CAM cell then
        # covers 21 frame pixels instead of 32, which localises ships whose hulls are only
        # 10-40 px wide, and ships appear at 1.5x their training scale, which the
        # classifier handles (measured in the README).
        return {"n_train": 1200, "n_val": 400, "train_size": (160, 160), "clip_size": (544, 960), "epochs": self.epochs or 12,
                "frames": self.frames or 300, "clip_wh": (640, 360), "calib": 200}


TOLERANCE_PX = 15  # the pointing game's customary tolerance (Zhang et al., ECCV 2016)


def ship_distance(peak: tuple[float, float] | None, boxes) -> float:
    """:func:`edge.metrics.pointing_distance` from a CAM peak to the clip's ship boxes, whose x1, y1 are exclusive.

    The clip's boxes cover pixel columns ``x0 .. x1 - 1``; the metric takes
    closed boxes, so the last covered pixel is passed as the edge.
    """
    closed = np.asarray(boxes, np.float64).reshape(-1, 4) - np.array([0.0, 0.0, 1.0, 1.0])
    return pointing_distance(peak, closed)


def keras_pointing_game(run: Path, clip, size: tuple[int, int]) -> tuple[float, float, int]:
    """Pointing game of the Keras model itself on the clip (its CAM at frame size)."""
    from edge.cam import DenseCAM, peak_location
    from edge.preprocess import fit
    from training.model import cam_weights, inference_model
    from training.run import load_run

    model, info = load_run(run)
    inf = inference_model(model, info.task, input_size=size)
    w, b, _ = cam_weights(model)
    cam = DenseCAM(w, b)
    hits, near, n = 0, 0, 0
    batch, boxes_list, shapes = [], [], []

    def flush():
        nonlocal hits, near, n
        if not batch:
            return
        out = inf.predict(np.stack(batch).astype(np.float32), verbose=0)
        for feats, boxes, shape in zip(out["features"], boxes_list, shapes):
            d = ship_distance(peak_location(cam.raw(feats, 0), shape), boxes)
            hits += d == 0.0
            near += d <= TOLERANCE_PX
            n += 1
        batch.clear(), boxes_list.clear(), shapes.clear()

    for frame, boxes in clip.frames():
        if len(boxes) == 0:
            continue
        batch.append(fit(frame, size)[0])
        boxes_list.append(boxes)
        shapes.append(frame.shape[:2])
        if len(batch) == 16:
            flush()
    flush()
    if not n:
        return float("nan"), float("nan"), 0
    return hits / n, near / n, n


class _StepTimer:
    """Seconds of each demo step, printed as each one ends: ``with timer("train"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        started = time.monotonic()
        yield
        self.seconds[name] = round(time.monotonic() - started, 1)
        print(f"[demo] {name}: {self.seconds[name]:.1f} s")


class ClipScore:
    """The runtime's verdict on each clip frame against its true ship boxes: an ``on_frame`` callback of ``run``.

    Counts, over frames with a ship, how often the frame is flagged and the
    CAM peak lands on a ship (or within :data:`TOLERANCE_PX`); over empty
    frames, how often the frame stays clear. Keeps the annotated frame of the
    most confident boxed ship from the last three quarters of the clip, for
    the README picture.
    """

    def __init__(self, truth: list[list], annotate) -> None:
        self.truth, self.annotate = truth, annotate
        self.counts = {"n": 0, "hit": 0, "near": 0, "ship_frames_flagged": 0, "empty": 0, "empty_clear": 0}
        self.best_score, self.best_image = -1.0, None

    def __call__(self, captured, res, record) -> None:
        boxes = np.asarray(self.truth[captured.index], np.float32).reshape(-1, 4)
        c = self.counts
        if not len(boxes):
            c["empty"] += 1
            c["empty_clear"] += not bool(res.positive[0])
            return
        c["ship_frames_flagged"] += bool(res.positive[0])
        d = ship_distance(res.peak, boxes)
        c["n"] += 1
        c["hit"] += d == 0.0
        c["near"] += d <= TOLERANCE_PX
        if len(res.boxes) and res.scores[0] > self.best_score and len(self.truth) // 4 <= captured.index:
            self.best_score = float(res.scores[0])
            self.best_image = self.annotate.annotate(captured.frame, res)

    def shares(self) -> dict:
        """The clip's figures as shares (NaN when the clip had no frame of that kind)."""
        c = self.counts

        def share(k: str, of: str) -> float:
            return c[k] / c[of] if c[of] else float("nan")

        return {"pointing_game_int8": share("hit", "n"), "pointing_game_int8_15px": share("near", "n"),
                "clip_ship_frames_flagged": share("ship_frames_flagged", "n"),
                "clip_empty_frames_clear": share("empty_clear", "empty")}


def run_demo(opts: DemoOptions) -> dict:
    """Run every step; return (and write) the summary."""
    from edge.synthetic import SceneClip, generate_dataset
    from export.exporter import ExportOptions, export_run
    from export.verify import verify
    from training.train import train

    plan = opts.plan
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    timer = _StepTimer()
    with timer("generate"):
        generate_dataset(out / "data", n_train=plan["n_train"], n_val=plan["n_val"], seed=opts.seed)
        clip = SceneClip(seed=opts.seed, n_frames=plan["frames"], width=plan["clip_wh"][0], height=plan["clip_wh"][1])
        clip.write(out / "data" / "clip.mp4", out / "data" / "clip_boxes.jsonl")
    with timer("train"):
        result = train(_train_config(opts, out))
    with timer("export"):
        manifests = export_run(out / "train", out / "export", ExportOptions(
            formats=("tflite-int8", "onnx-fp32"), calib=str(out / "data" / "train"), calib_size=plan["calib"],
            input_size=plan["clip_size"], seed=opts.seed))
    with timer("verify"):
        by_format = {r["format"]: r for r in verify(out / "export", out / "data" / "val")["artifacts"]}
    with timer("keras pointing game"):
        keras_game = keras_pointing_game(out / "train", clip, plan["clip_size"])
    score, runtime = _run_clip(opts, out, next(m for m in manifests if "int8" in m.name), timer)
    if score.best_image is not None:
        _write_png(out / "frame.png", score.best_image)
    summary = _summary(opts, result.metrics, by_format, keras_game, score, runtime,
                       round(time.monotonic() - t0, 1), timer.seconds)
    atomic.write_json(out / "summary.json", summary)
    print_table(summary, out)
    return summary


def _train_config(opts: DemoOptions, out: Path):
    from training.config import TrainConfig

    plan = opts.plan
    return TrainConfig(data=str(out / "data"), out=str(out / "train"), input_size=plan["train_size"], alpha=0.35,
                       weights=opts.weights, epochs=plan["epochs"], lr=2e-3, batch_size=32, patience=plan["epochs"],
                       schedule="constant", augment="aerial", finetune_epochs=0, finetune_blocks=3,
                       seed=opts.seed, verbose=0 if opts.quick else 2)


def _run_clip(opts: DemoOptions, out: Path, manifest: Path, timer: _StepTimer) -> tuple[ClipScore, dict]:
    """The edge runtime with the int8 model over the clip, each frame scored against the clip's boxes."""
    from edge.annotate import BoxAnnotator, HeatmapAnnotator, LabelAnnotator, compose
    from edge.detector import Detector
    from edge.pipeline import RunOptions, run
    from edge.sources import CaptureMode, SyntheticSource

    plan = opts.plan
    truth = [json.loads(line)["boxes"] for line in (out / "data" / "clip_boxes.jsonl").read_text().splitlines()]
    # the README picture is drawn outside the loop, where a frame rate would mean nothing
    score = ClipScore(truth, compose(HeatmapAnnotator(), BoxAnnotator(), LabelAnnotator(show_fps=False)))
    with timer("edge runtime over the clip"), Detector.from_manifest(manifest) as det:
        runtime = run(det, SyntheticSource(seed=opts.seed, n_frames=plan["frames"], width=plan["clip_wh"][0],
                                           height=plan["clip_wh"][1]),
                      RunOptions(out_dir=out, mode=CaptureMode.ALL, threshold=0.5), on_frame=score)
    return score, runtime


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if ok:
        atomic.write_bytes(path, png.tobytes())


def _summary(opts: DemoOptions, m: dict, by_format: dict, keras_game: tuple[float, float, int], score: ClipScore,
             runtime: dict, seconds: float, steps_seconds: dict[str, float]) -> dict:
    """summary.json: the validation, parity, pointing-game and clip figures, the timings and the machine."""
    from edge.machine import machine_info

    pg_keras, pg_keras_tol, n_ship_frames = keras_game
    clip = score.shares()
    return {
        "val_accuracy": m["accuracy"],
        "val_balanced_accuracy": m["balanced_accuracy"],
        "val_roc_auc": m["roc_auc"],
        "threshold": m["threshold"],
        "int8_agreement": by_format["tflite-int8"]["agreement"],
        "int8_cam_correlation": by_format["tflite-int8"]["cam_correlation"],
        "onnx_fp32_max_abs_diff": by_format["onnx-fp32"]["max_abs_score_diff"],
        "pointing_game_keras": pg_keras,
        "pointing_game_int8": clip["pointing_game_int8"],
        "pointing_game_keras_15px": pg_keras_tol,
        "pointing_game_int8_15px": clip["pointing_game_int8_15px"],
        "ship_frames": n_ship_frames,
        "clip_ship_frames_flagged": clip["clip_ship_frames_flagged"],
        "clip_empty_frames_clear": clip["clip_empty_frames_clear"],
        "clip_input_size": list(opts.plan["clip_size"]),
        "frames": runtime["frames"],
        "runtime_fps": runtime.get("fps"),
        "seconds": seconds,
        "steps_seconds": steps_seconds,
        "machine": machine_info(),
        "quick": opts.quick,
        "runtime": runtime,
        "parity": {k: {kk: v[kk] for kk in ("agreement", "max_abs_score_diff", "cam_correlation", "balanced_accuracy_delta")}
                   for k, v in by_format.items()},
    }


def print_table(s: dict, out: Path) -> None:
    rows = [
        ("val accuracy", f"{s['val_accuracy']:.3f}"),
        ("val balanced accuracy", f"{s['val_balanced_accuracy']:.3f}"),
        ("val ROC AUC", f"{s['val_roc_auc']:.3f}"),
        ("int8 agreement with Keras", f"{s['int8_agreement']:.3f}"),
        ("int8 CAM correlation", f"{s['int8_cam_correlation']:.3f}"),
        ("ONNX fp32 max |Δscore|", f"{s['onnx_fp32_max_abs_diff']:.1e}"),
        ("pointing game, Keras", f"{s['pointing_game_keras']:.3f}  ({s['ship_frames']} ship frames)"),
        ("pointing game, int8", f"{s['pointing_game_int8']:.3f}"),
        ("  within 15 px, Keras / int8", f"{s['pointing_game_keras_15px']:.3f} / {s['pointing_game_int8_15px']:.3f}"),
        ("clip: ship frames flagged", f"{s['clip_ship_frames_flagged']:.3f}"),
        ("clip: empty frames clear", f"{s['clip_empty_frames_clear']:.3f}"),
        ("frames", str(s["frames"])),
        ("runtime fps", f"{s['runtime_fps']:.1f}" if s["runtime_fps"] else "-"),
        ("seconds (all steps)", f"{s['seconds']:.0f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nedgecam demo — {s['machine']['cpu']}, {s['machine']['cores_usable']} cores")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    if s.get("quick"):
        print("\n--quick trains one epoch on 64 stills: a check that every step runs, not a model. Its accuracy\n"
              "and int8 agreement figures mean nothing; run `make demo` for real ones.")
    # listed from the folder, so a file the run did not write (frame.png when no ship was boxed) is not named
    listed = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(out).iterdir() if not p.name.startswith("."))
    print(f"\noutputs in {out}: {', '.join(listed)}")

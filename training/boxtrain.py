"""Training from box-labelled frames (YOLO, COCO or VOC): split, cut, mine, train.

``edgecam train DATA --positive sea`` on a detection dataset runs this:

1. the frames are split into training, validation and held-out evaluation
   frames (by frame, with bursts kept whole, or by camera), and the split is
   written to ``split.json`` so ``edgecam evaluate --split`` can judge the
   model on frames it never saw;
2. crops are cut from the training and validation frames at ``scale``
   (:mod:`training.tiles`);
3. round one: a short head-only model is trained on those crops and run
   over whole training frames; the cells that fire away from every vessel
   become hard negatives (hard-negative mining);
4. round two: the model is trained on all crops, with ``pooling="cell"``, so
   the score is the best cell's evidence and means the same on a crop and on
   a whole frame; then it mines its own false alarms on whole training
   frames and fine-tunes a few more epochs on them;
5. the decision threshold is fitted on the whole validation frames (at most
   0.5 false peaks per frame), not on crops.

``run.json`` records ``frame_scale``; the exporter copies it into every
manifest, and the runtime resizes whole frames by it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge import atomic
from edge.checks import non_negative_int
from edge.errors import ConfigError, DataError
from edge.manifest import Task
from training.config import TrainConfig
from training.run import read_run_info
from training.tiles import TileOptions, mine_windows, summary_line, write_tiles

log = logging.getLogger("edgecam.training")


@dataclass(frozen=True)
class BoxTrainOptions:
    """What a box-labelled run adds to :class:`TrainConfig`.

    Attributes:
        datasets: one or more detection dataset roots (formats may differ).
        positive: class names that count as a vessel (e.g. ``("sea", "vessel")``).
        label: name of the positive class in the model (default: the first positive).
        scale: model pixels per native pixel, for crops and for the runtime.
        test_fraction: share of frames held out from training and validation.
        val_fraction: share of frames for validation (early stopping, threshold).
        split_by: ``frame`` (bursts kept whole) or ``camera``.
        tiles: crop options (its ``input_size`` and ``scale`` follow the run's).
        mine_frames: training frames the round-one model is run over (0: no mining).
        mine_floor: cell probability above which a cell away from vessels is mined.
        mine_per_frame: mined windows per frame at most.
        round1_epochs: head-only epochs of the round-one model.
        split_file: reuse the ``split.json`` of an earlier run, so two runs
            are judged on the same held-out frames.
        final_mining_epochs: after training, the trained model mines its own
            false alarms on other training frames and fine-tunes this many
            more epochs on them (0: no such round).
    """

    datasets: tuple[str, ...]
    positive: tuple[str, ...]
    label: str | None = None
    scale: float = 1.5
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    split_by: str = "frame"
    tiles: TileOptions = field(default_factory=TileOptions)
    mine_frames: int = 150
    mine_floor: float = 0.3
    mine_per_frame: int = 6
    round1_epochs: int = 2
    final_mining_epochs: int = 3
    split_file: str | None = None

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ConfigError("box training: expected at least one dataset folder; received none")
        if not self.positive:
            raise ConfigError("box training: expected --positive CLASS[,CLASS...] naming the vessel class(es); received none")
        if self.split_by not in ("frame", "camera"):
            raise ConfigError(f"split_by: expected 'frame' or 'camera'; received {self.split_by!r}")
        if not (0.0 <= self.test_fraction < 0.9 and 0.0 < self.val_fraction < 0.9
                and self.test_fraction + self.val_fraction < 0.9):
            raise ConfigError(f"test/val fractions: expected each in [0, 0.9) and together < 0.9; "
                              f"received {self.test_fraction}, {self.val_fraction}")
        non_negative_int("mine_frames", self.mine_frames)
        non_negative_int("mine_per_frame", self.mine_per_frame)
        if not 0.0 < self.mine_floor < 1.0:
            raise ConfigError(f"mine_floor: expected a score in (0, 1); received {self.mine_floor}")

    @property
    def positive_label(self) -> str:
        return self.label or self.positive[0]


def split_datasets(opts: BoxTrainOptions, seed: int) -> dict[str, list]:
    """Frames of every dataset, split into ``train``, ``val`` and ``test``; no frame is in two splits."""
    from edge.datasets import load_box_dataset, split_frames

    out = {"train": [], "val": [], "test": []}
    given = None
    if opts.split_file:
        doc = json.loads(Path(opts.split_file).read_text())
        given = {str(Path(p).resolve()): k for k in out for p in doc.get(k, [])}
    for root in opts.datasets:
        ds = load_box_dataset(root)
        known = set(ds.class_names)
        if not known & set(opts.positive):
            raise DataError(f"--positive {','.join(opts.positive)}: none of these is a class of {root}; "
                            f"its classes are {list(ds.class_names)}")
        if given is not None:
            for f in ds.frames:
                split = given.get(str(Path(f.path).resolve()))
                if split is None:
                    raise DataError(f"{opts.split_file} does not place frame {f.path}; split files must cover every frame")
                out[split].append(f)
            continue
        rest = ds
        if opts.test_fraction > 0:
            rest, test = split_frames(ds, opts.test_fraction, seed, by=opts.split_by)
            out["test"] += list(test.frames)
        train, val = split_frames(rest, opts.val_fraction / (1.0 - opts.test_fraction), seed + 1, by=opts.split_by)
        out["train"] += list(train.frames)
        out["val"] += list(val.frames)
        log.info("%s (%s): %d frames, cameras %s -> %d train, %d val, %d held out", root, ds.format, len(ds),
                 ds.cameras(), len(train), len(val), len(ds) - len(train) - len(val))
    seen = {}
    for split, frames in out.items():
        for f in frames:
            if seen.setdefault(f.path, split) != split:
                raise DataError(f"frame {f.path} fell into both {seen[f.path]} and {split}; split is broken")
    return out


def mine(model_path: Path, frames, opts: BoxTrainOptions, out_dir: Path, seed: int, prefix: str = "mined") -> int:
    """Run a model over whole frames and write its false-alarm cells as negative crops."""
    from training.tiles import cut, write_crop

    pick = sorted(int(i) for i in np.random.default_rng(seed).permutation(len(frames))[: opts.mine_frames])
    tiles = replace(opts.tiles, scale=opts.scale)
    written = 0
    for i, (frame, image, probs) in zip(pick, cell_maps(model_path, [frames[i] for i in pick], opts.scale)):
        for k, win in enumerate(mine_windows(probs, frame, opts.positive, tiles, opts.mine_floor, opts.mine_per_frame)):
            crop = cut(image, win, tiles.input_size)
            if crop is not None:
                write_crop(out_dir / f"{prefix}{i:05d}_{k}_{Path(frame.path).stem[:40]}.jpg", crop)
                written += 1
    return written


def mine_and_continue(run: Path, cfg: TrainConfig, opts: BoxTrainOptions, train_frames, strategy=None):
    """The trained model mines its own false alarms on training frames, then fine-tunes on them.

    The continued run lives in ``run/final_mining``; its model and metrics
    replace the run's, and ``tiles.json`` counts the new crops.
    """
    import shutil

    from training.train import train

    label = opts.positive_label
    tile_root = run / "tiles"
    n = mine(run / "model.keras", train_frames, opts, tile_root / "train" / f"no_{label}", cfg.seed + 1, prefix="final")
    log.info("hard-negative mining with the trained model: %d more crops", n)
    cont = replace(cfg, data=str(tile_root / "train"), val=str(tile_root / "val"), positive=label, pooling="cell",
                   out=str(run / "final_mining"), epochs=0, finetune_epochs=opts.final_mining_epochs,
                   init_model=str(run / "model.keras"))
    result = train(cont, strategy=strategy)
    shutil.copyfile(run / "final_mining" / "model.keras", run / "model.keras")
    shutil.copyfile(run / "final_mining" / "metrics.json", run / "metrics.json")
    info = json.loads((run / "run.json").read_text())
    done = read_run_info(run / "final_mining" / "run.json")
    info.update(thresholds=list(done.thresholds), threshold_rule=done.threshold_rule,
                final_mining={"crops": n, "epochs": opts.final_mining_epochs, "seconds": done.extra.get("seconds")})
    atomic.write_json(run / "run.json", info)
    counts = json.loads((tile_root / "tiles.json").read_text())
    counts["train"]["mined_final"] = n
    atomic.write_json(tile_root / "tiles.json", counts)
    return replace(result, run_dir=run)  # the run the user named holds the final model now


def cell_maps(model_path: Path, frames, scale: float):
    """``(frame, image, cell probabilities (h, w))`` of a model over each whole frame, resized as the runtime does."""
    import keras

    from edge.cam import DenseCAM
    from edge.imageio import read_image
    from edge.preprocess import fit, scaled_input_size
    from training.model import cam_weights, inference_model

    model = keras.models.load_model(model_path, compile=False)
    inference = inference_model(model, Task.BINARY, dynamic=True)
    w, b, _ = cam_weights(model)
    cam = DenseCAM(w, b)
    for frame in frames:
        image = read_image(frame.path)
        fitted, _ = fit(image, scaled_input_size(image.shape[:2], scale))
        feats = np.asarray(inference(fitted[None].astype(np.float32))["features"])[0]
        yield frame, image, 1.0 / (1.0 + np.exp(-(cam.raw(feats, 0) + b[0])))


def fit_frame_threshold(maps, positive: tuple[str, ...], scale: float, max_false_per_frame: float = 0.5,
                        min_width: float = 32.0) -> dict:
    """The decision threshold, fitted on whole held-out frames rather than on crops.

    A crop-level threshold knows nothing of the thousands of cells a whole
    frame has. Here each peak cell of each validation frame is a candidate
    box: true when its centre lies in a vessel box (grown by half a cell),
    false otherwise. The threshold is the lowest level at which the false
    peaks stay within ``max_false_per_frame``; the recall of vessels at least
    ``min_width`` px wide at that level is reported beside it.

    Args:
        maps: ``(LabeledFrame, cell probabilities)`` pairs, e.g. from :func:`cell_maps`.
    """
    from edge.boxes import cell_peaks
    from training.tiles import cell_centres

    false_levels, best_per_vessel, n = [], [], 0
    for frame, probs in maps:
        n += 1
        vessels = frame.boxes_of(positive)
        grow = 16.0 / scale  # half a 32-px cell, in frame pixels
        xs, ys = cell_centres(probs.shape, (frame.height, frame.width))
        peaks = cell_peaks(probs, 0.01)
        px, py, pv = xs[peaks[:, 1]], ys[peaks[:, 0]], probs[peaks[:, 0], peaks[:, 1]]
        inside = np.zeros((len(peaks), len(vessels)), bool)
        if len(vessels):
            inside = ((px[:, None] >= vessels[None, :, 0] - grow) & (px[:, None] <= vessels[None, :, 2] + grow)
                      & (py[:, None] >= vessels[None, :, 1] - grow) & (py[:, None] <= vessels[None, :, 3] + grow))
        false_levels += list(pv[~inside.any(axis=1)])
        for k, box in enumerate(vessels):
            if box[2] - box[0] >= min_width:
                best_per_vessel.append(float(pv[inside[:, k]].max()) if inside[:, k].any() else 0.0)
    if n == 0:
        raise DataError("frame threshold: expected validation frames; received none")
    # float32 throughout: the runtime compares float32 scores with float32 thresholds
    levels = np.sort(np.asarray(false_levels, np.float32))[::-1]
    allowed = int(np.floor(max_false_per_frame * n))
    # the (allowed+1)-th strongest false peak must fall below the threshold
    threshold = np.nextafter(levels[allowed], np.float32(1)) if len(levels) > allowed else np.float32(0.5)
    threshold = float(np.clip(threshold, np.float32(0.05), np.float32(0.999)))
    best = np.asarray(best_per_vessel)
    return {"threshold": threshold, "frames": n, "max_false_per_frame": max_false_per_frame,
            "false_per_frame": float((np.asarray(false_levels, np.float32) >= np.float32(threshold)).sum() / n),
            "recall_wide": float((best >= threshold).mean()) if best.size else None, "wide_vessels": int(best.size)}


def apply_frame_threshold(run: Path, frames, opts: BoxTrainOptions) -> dict:
    """Fit the threshold on ``frames`` (validation) and make it the run's decision threshold."""
    maps = ((frame, probs) for frame, _, probs in cell_maps(run / "model.keras", frames, opts.scale))
    fitted = fit_frame_threshold(maps, opts.positive, opts.scale)
    info = json.loads((run / "run.json").read_text())
    info.setdefault("crop_thresholds", info.get("thresholds"))
    info["thresholds"] = [fitted["threshold"]]
    info["threshold_rule"] = f"frames: at most {fitted['max_false_per_frame']} false peaks per validation frame"
    info["frame_threshold"] = fitted
    atomic.write_json(run / "run.json", info)
    wide = fitted["recall_wide"] if fitted["recall_wide"] is None else round(fitted["recall_wide"], 3)
    log.info("frame threshold %.3f on %d validation frames: %.2f false peaks per frame, recall of vessels >= 32 px %s",
             fitted["threshold"], fitted["frames"], fitted["false_per_frame"], wide)
    return fitted


def train_boxes(cfg: TrainConfig, opts: BoxTrainOptions, strategy=None, resume: bool = False):
    """Split, cut, mine and train; returns the :class:`training.train.TrainResult` of the final model.

    Example:
        >>> train_boxes(TrainConfig(data="shore", out="runs/ships", weights="imagenet"),  # doctest: +SKIP
        ...             BoxTrainOptions(datasets=("shore",), positive=("sea",)))
    """
    from training.train import train

    t0 = time.monotonic()
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    if cfg.input_size[0] != cfg.input_size[1]:
        raise ConfigError(f"box training cuts square crops: expected --input-size N; received {cfg.input_size}")
    tiles = replace(opts.tiles, input_size=cfg.input_size[0], scale=opts.scale, seed=cfg.seed)
    label = opts.positive_label
    tile_root = run / "tiles"
    splits = split_datasets(opts, cfg.seed)
    atomic.write_json(run / "split.json", {
        "by": opts.split_by, "seed": cfg.seed, "positive": list(opts.positive), "datasets": list(opts.datasets),
        **{k: [f.path for f in v] for k, v in splits.items()}})
    manifest_path = tile_root / "tiles.json"
    if resume and manifest_path.is_file():
        counts_json = json.loads(manifest_path.read_text())
        log.info("resume: reusing the crops in %s", tile_root)
    else:
        counts = {s: write_tiles(splits[s], opts.positive, tile_root / s, label, tiles, split=s) for s in ("train", "val")}
        for s in ("train", "val"):
            if counts[s].positive == 0:
                raise DataError(f"no {s} crop holds a whole {'/'.join(opts.positive)} box; check --positive and the labels")
        log.info("%s", summary_line(counts))
        if opts.mine_frames > 0 and cfg.weights is not None:
            r1 = replace(cfg, data=str(tile_root / "train"), val=str(tile_root / "val"), positive=label, pooling="cell",
                         out=str(run / "round1"), epochs=opts.round1_epochs, finetune_epochs=0)
            first = train(r1, strategy=strategy)
            counts["train"].mined = mine(first.run_dir / "model.keras", splits["train"], opts,
                                         tile_root / "train" / f"no_{label}", cfg.seed)
            log.info("hard-negative mining: %d crops from the cells a round-one model (val ROC AUC %.3f) fired on "
                     "away from vessels", counts["train"].mined, first.metrics.get("roc_auc", float("nan")))
        counts_json = {s: c.as_dict() for s, c in counts.items()}
        counts_json.update(scale=opts.scale, input_size=tiles.input_size, window_native_px=tiles.window)
        atomic.write_json(manifest_path, counts_json)
    final = replace(cfg, data=str(tile_root / "train"), val=str(tile_root / "val"), positive=label, pooling="cell")
    result = train(final, strategy=strategy, resume=resume)
    info = json.loads((run / "run.json").read_text())
    info.update(frame_scale=opts.scale, box_training={
        "datasets": list(opts.datasets), "positive": list(opts.positive), "split": "split.json",
        "split_by": opts.split_by, "crops": counts_json, "frames": {k: len(v) for k, v in splits.items()},
        "seconds_with_crops": round(time.monotonic() - t0, 1)})
    atomic.write_json(run / "run.json", info)
    if opts.final_mining_epochs > 0 and opts.mine_frames > 0 and cfg.weights is not None:
        result = mine_and_continue(run, cfg, opts, splits["train"], strategy)
    apply_frame_threshold(run, splits["val"], opts)
    # the whole pipeline (crops, both mining rounds, every training round, the threshold), this session
    info = json.loads((run / "run.json").read_text())
    info["box_training"]["seconds_total"] = round(time.monotonic() - t0, 1)
    atomic.write_json(run / "run.json", info)
    return result


__all__ = ["BoxTrainOptions", "train_boxes", "split_datasets", "mine"]

"""Training the localisation head: crops of box-labelled frames, cached encoder features, fit, threshold.

The steps of :func:`training.locate_train.train_locate` that read frames, cut crops, cache features,
fit the decoder and choose its peak threshold.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, DataError
from edge.locate import decode, render_targets

log = logging.getLogger("edgecam.training")


@dataclass(frozen=True)
class LocateOptions:
    """How the head is trained.

    Attributes:
        from_run: the classifier run whose encoder, scale and split are reused.
        datasets: box-labelled dataset folders (those of the classifier run).
        positive: vessel class names.
        out: the new run folder.
        crop: crop side in model pixels (a multiple of 32).
        per_frame: vessel-centred crops per training frame at most.
        background: crops anywhere per frame (shore, harbour, sky: where false boxes come from).
        epochs: decoder epochs at most (early stopping on validation loss).
        patience: epochs without a better validation loss before stopping.
        time_budget_s: wall-time cap for the decoder fit (None: no cap).
        width: decoder channels.
        dropout: channel dropout on the cached features while training.
        jitter: brightness and contrast of each crop vary by up to this share (0: none).
        lr: AdamW learning rate (weight decay 1e-4).
        max_false_per_frame: false boxes per validation frame the threshold allows.
        threshold_frames: validation frames used to choose the threshold at most.
        zoom_out: shares of the frame scale at which more training crops are
            cut (half as many per frame), so large vessels are seen whole.
        pass_factors: shares of the frame scale tried for an extra head pass
            at run time (:class:`edge.locate.HeadPass`); empty: one scale.
        seed: crop placement and flips.
    """

    from_run: str
    datasets: tuple[str, ...]
    positive: tuple[str, ...]
    out: str
    crop: int = 384
    per_frame: int = 6
    background: int = 4
    epochs: int = 60
    patience: int = 8
    time_budget_s: float | None = None
    width: int = 48
    dropout: float = 0.2
    jitter: float = 0.0
    lr: float = 1e-3
    max_false_per_frame: float = 0.3
    threshold_frames: int = 85
    zoom_out: tuple[float, ...] = (0.5,)  # chosen on the validation frames (README, the head section)
    pass_factors: tuple[float, ...] = (0.5, 0.375)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.crop % 32 or self.crop < 64:
            raise ConfigError(f"crop: expected a multiple of 32, at least 64; received {self.crop}")
        if self.background < 0:
            raise ConfigError(f"background: expected >= 0 crops per frame; received {self.background}")
        if self.per_frame < 1 or self.epochs < 1 or self.patience < 1 or self.width < 8:
            raise ConfigError(f"expected per_frame, epochs, patience >= 1 and width >= 8; received "
                              f"{self.per_frame}, {self.epochs}, {self.patience}, {self.width}")
        for name in ("zoom_out", "pass_factors"):
            if any(not 0.0 < f < 1.0 for f in getattr(self, name)):
                raise ConfigError(f"{name}: expected shares of the frame scale in (0, 1); received {getattr(self, name)}")
        if not self.positive:
            raise ConfigError("--head locate: expected --positive CLASS[,CLASS...] naming the vessel classes")


def run_frames(opts: LocateOptions) -> dict[str, list]:
    """Frames of the datasets in the classifier run's split, keyed ``train``, ``val``, ``test``."""
    from edge.datasets import load_box_dataset

    split_path = Path(opts.from_run) / "split.json"
    if not split_path.is_file():
        raise DataError(f"--from-run {opts.from_run}: expected split.json (a run trained on box-labelled frames); none")
    doc = json.loads(split_path.read_text())
    where = {str(Path(p).resolve()): k for k in ("train", "val", "test") for p in doc.get(k, [])}
    out: dict[str, list] = {"train": [], "val": [], "test": []}
    for root in opts.datasets:
        for f in load_box_dataset(root).frames:
            k = where.get(str(Path(f.path).resolve()))
            if k is not None:
                out[k].append(f)
    if not out["train"] or not out["val"]:
        raise DataError(f"none of the frames of {list(opts.datasets)} is in the train and val lists of {split_path}")
    return out


def scaled_frame(frame, scale: float):
    """(frame resized as the runtime resizes it, vessel-agnostic box scale (sx, sy))."""
    from edge.imageio import read_image
    from edge.preprocess import fit, scaled_input_size

    image = read_image(frame.path)
    fitted, p = fit(image, scaled_input_size(image.shape[:2], scale))
    return image, fitted, np.array([p.scale_x, p.scale_y, p.scale_x, p.scale_y], np.float32)


def crop_windows(boxes: np.ndarray, hw: tuple[int, int], crop: int, per_frame: int, background: int,
                 rng) -> list[tuple[int, int]]:
    """Top-left corners of crops: around randomly chosen vessels (jittered), then anywhere."""
    H, W = hw
    corners = []
    if len(boxes):
        for k in rng.permutation(len(boxes))[:per_frame]:
            cx, cy = (boxes[k, 0] + boxes[k, 2]) / 2, (boxes[k, 1] + boxes[k, 3]) / 2
            x = cx - rng.uniform(0.15, 0.85) * crop
            y = cy - rng.uniform(0.15, 0.85) * crop
            corners.append((int(np.clip(y, 0, max(H - crop, 0))), int(np.clip(x, 0, max(W - crop, 0)))))
    for _ in range(background):
        corners.append((int(rng.integers(0, max(H - crop, 0) + 1)), int(rng.integers(0, max(W - crop, 0) + 1))))
    return corners


def cut_crops(frames, positive, scale: float, opts: LocateOptions, rng):
    """(crops (N, crop, crop, 3) uint8, targets (N, h, w, 4) float32) from whole frames at ``scale``.

    With ``opts.zoom_out``, each frame also gives half as many crops at each
    of those shares of ``scale``, where large vessels fit a crop whole.
    """
    crops, targets = [], []
    for frame in frames:
        for k, factor in enumerate((1.0, *opts.zoom_out)):
            _, fitted, s = scaled_frame(frame, scale * factor)
            per, background = (opts.per_frame, opts.background) if k == 0 else \
                (max(1, opts.per_frame // 2), opts.background // 2)
            _cut(fitted, frame.boxes_of(positive) * s, per, background, opts, rng, crops, targets)
    return np.stack(crops), np.stack(targets).astype(np.float32)


def _cut(fitted, boxes, per_frame: int, background: int, opts: LocateOptions, rng, crops: list, targets: list) -> None:
    """Crops of one resized frame and their targets, appended to ``crops`` and ``targets``."""
    c = opts.crop
    if fitted.shape[0] < c or fitted.shape[1] < c:
        return
    for y, x in crop_windows(boxes, fitted.shape[:2], c, per_frame, background, rng):
        img = fitted[y:y + c, x:x + c]
        b = boxes - np.array([x, y, x, y], np.float32)
        if rng.random() < 0.5:
            img = img[:, ::-1]
            b = np.stack([c - b[:, 2], b[:, 1], c - b[:, 0], b[:, 3]], 1) if len(b) else b
        t = render_targets(b, (c, c))
        if opts.jitter:
            # webcams differ in exposure and contrast: vary both so the cache does not repeat one look
            gain, contrast = rng.uniform(1 - opts.jitter, 1 + opts.jitter, 2)
            mean = img.mean()
            img = np.clip((img.astype(np.float32) - mean) * contrast + mean * gain, 0, 255).astype(np.uint8)
        crops.append(np.ascontiguousarray(img))
        targets.append(np.concatenate([t.heat[..., None], t.size, t.mask[..., None]], -1))


def encode(enc, crops: np.ndarray, batch: int = 32) -> list[np.ndarray]:
    """The encoder's three skip features of every crop, float16 (the cache the decoder trains on)."""
    parts: list[list[np.ndarray]] = [[], [], []]
    for i in range(0, len(crops), batch):
        x = crops[i:i + batch].astype(np.float32) / 127.5 - 1.0
        for k, f in enumerate(enc(x, training=False)):
            parts[k].append(np.asarray(f).astype(np.float16))
    return [np.concatenate(p) for p in parts]


def _batches_class():
    import keras

    class Batches(keras.utils.PyDataset):
        """Float32 batches from the float16 feature cache, so the cache is never held twice in memory."""

        def __init__(self, feats, targets, batch=32, shuffle=False, seed=0):
            super().__init__()
            self.feats, self.targets, self.batch = feats, targets, batch
            self.order = np.arange(len(targets))
            self.rng = np.random.default_rng(seed) if shuffle else None
            self.on_epoch_end()

        def __len__(self):
            return -(-len(self.targets) // self.batch)

        def __getitem__(self, k):
            idx = np.sort(self.order[k * self.batch:(k + 1) * self.batch])
            return tuple(f[idx].astype(np.float32) for f in self.feats), self.targets[idx]

        def on_epoch_end(self):
            if self.rng is not None:
                self.rng.shuffle(self.order)

    return Batches


def _Batches(feats, targets, shuffle=False, seed=0):
    return _batches_class()(feats, targets, shuffle=shuffle, seed=seed)


def fit_head(head, train, val, opts: LocateOptions) -> dict:
    """Fit the decoder on cached features; returns epochs run, best validation loss and whether the budget stopped it."""
    import keras

    from training.locate import locate_loss, training_model

    model = training_model(head, opts.dropout)
    model.compile(optimizer=keras.optimizers.AdamW(opts.lr, weight_decay=1e-4), loss=locate_loss)
    start, stopped = time.monotonic(), {"budget": False}

    class Budget(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            spent = time.monotonic() - start
            if opts.time_budget_s and spent * (epoch + 2) / (epoch + 1) > opts.time_budget_s:
                stopped["budget"] = True
                self.model.stop_training = True

    stop = keras.callbacks.EarlyStopping(patience=opts.patience, restore_best_weights=True)
    slower = keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=max(2, opts.patience // 3), verbose=0)
    hist = model.fit(_Batches(*train, shuffle=True, seed=opts.seed), epochs=opts.epochs,
                     validation_data=_Batches(*val), callbacks=[stop, slower, Budget()], verbose=2)
    losses = hist.history["val_loss"]
    return {"epochs": len(losses), "best_val_loss": float(min(losses)), "stopped_by_budget": stopped["budget"],
            "seconds": round(time.monotonic() - start, 1)}


def frame_boxes(inference, frame, scale: float, floor: float = 0.05):
    """(boxes in native pixels, scores) of the head on one whole frame, decoded at ``floor``."""
    _, fitted, s = scaled_frame(frame, scale)
    out = inference(fitted[None].astype(np.float32), training=False)
    boxes, scores = decode(np.asarray(out["centres"])[0, ..., 0], np.asarray(out["sizes"])[0], floor)
    return boxes / s, scores


def load_head(run: str | Path):
    """The decoder of a head run, or None for a plain classifier run."""
    import keras

    path = Path(run) / "head.keras"
    if not path.is_file():
        return None
    return keras.models.load_model(path, compile=False)

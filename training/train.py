"""A training run: data, two-phase fine-tuning, early stopping, best checkpoint, metrics."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge import atomic
from edge.errors import ConfigError, DataError
from training import data as D
from training.config import TrainConfig
from training.model import BACKBONE, ModelConfig, build_classifier

log = logging.getLogger("edgecam.training")


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    metrics: dict
    seconds: float


def load_data(cfg: TrainConfig) -> tuple[D.LabeledImages, D.LabeledImages]:
    """Training and validation sets as the config describes, bad images checked."""
    if cfg.csv:
        full = D.from_csv(cfg.csv, cfg.data)
        train, val = D.stratified_split(full, cfg.val_split, cfg.seed)
    else:
        root = Path(cfg.data)
        if (root / "train").is_dir() and cfg.val is None and (root / "val").is_dir():
            train, val = D.from_folder(root / "train", cfg.positive), D.from_folder(root / "val", cfg.positive)
        elif cfg.val is not None:
            train, val = D.from_folder(root, cfg.positive), D.from_folder(cfg.val, cfg.positive)
        else:
            train, val = D.stratified_split(D.from_folder(root, cfg.positive), cfg.val_split, cfg.seed)
        if train.labels != val.labels:
            raise DataError(f"training labels {train.labels} differ from validation labels {val.labels}")
    if cfg.max_images:
        rng = np.random.default_rng(cfg.seed)
        train = train.subset(np.sort(rng.permutation(len(train))[: cfg.max_images]))
    return D.drop_bad(train, cfg.skip_bad), D.drop_bad(val, cfg.skip_bad)


def compile_model(model, task: str, lr):
    import keras

    if task == "multiclass":
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"), keras.metrics.AUC(name="auc", from_logits=True)]
    else:
        # The dense layer emits logits; a loss that expected probabilities here
        # cost this project's seed days of a model that never learned.
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        metrics = [
            keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0),
            keras.metrics.AUC(name="auc", from_logits=True, multi_label=task == "multilabel"),
        ]
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=metrics)
    return loss


def cosine_schedule(lr: float, decay_steps: int):
    """``lr`` decaying to zero along a half cosine over ``decay_steps`` steps.

    A run resumed midway decays over the epochs it has left, from ``lr``
    again: the optimiser's step count is not part of the checkpoint.
    """
    import keras

    return keras.optimizers.schedules.CosineDecay(lr, decay_steps=int(decay_steps), alpha=0.0)


def distribution_strategy(kind: str = "auto"):
    """``auto``: MultiWorkerMirrored when TF_CONFIG is set, Mirrored on >1 GPU, else the default."""
    import tensorflow as tf

    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "multiworker" or (kind == "auto" and os.environ.get("TF_CONFIG")):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored" or (kind == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    if kind != "auto":
        raise ConfigError(f"strategy: expected auto, none, mirrored or multiworker; received {kind!r}")
    return tf.distribute.get_strategy()


def _callbacks(cfg: TrainConfig, run: Path, phase: str):
    import keras

    mode = "min" if cfg.monitor == "val_loss" else "max"

    class Checkpoint(keras.callbacks.Callback):
        """Best model to ``model.keras`` and the latest to ``last.keras``, both written atomically."""

        def __init__(self):
            super().__init__()
            self.best = json.loads((run / "state.json").read_text())["best"] if (run / "state.json").exists() else None

        def on_epoch_end(self, epoch, logs=None):
            value = float((logs or {}).get(cfg.monitor, np.nan))
            better = self.best is None or (value < self.best if mode == "min" else value > self.best)
            if better and np.isfinite(value):
                self.best = value
                _save(self.model, run / "model.keras")
            _save(self.model, run / "last.keras")
            atomic.write_json(run / "state.json", {"phase": phase, "epoch": epoch + 1, "best": self.best, "monitor": cfg.monitor})

    return [
        Checkpoint(),
        keras.callbacks.EarlyStopping(monitor=cfg.monitor, mode=mode, patience=cfg.patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(run / f"history_{phase}.csv"), append=True),
    ]


def _save(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.partial.keras")
    model.save(tmp)
    os.replace(tmp, path)


def set_finetune(model, blocks: int) -> int:
    """Unfreeze the last ``blocks`` inverted-residual blocks (and the final 1x1 conv); return #trainable layers."""
    backbone = model.get_layer(BACKBONE)
    backbone.trainable = True
    first = 17 - blocks
    n = 0
    for layer in backbone.layers:
        name = layer.name
        block = int(name.split("_")[1]) if name.startswith("block_") else (99 if name.startswith(("Conv_1", "out_relu")) else -1)
        layer.trainable = block >= first and blocks > 0
        n += int(layer.trainable)
    return n


def train(cfg: TrainConfig, strategy=None, resume: bool = False) -> TrainResult:
    """Run both phases and write the run directory.

    Example:
        >>> result = train(TrainConfig(data="runs/demo/data", out="runs/demo/train"))  # doctest: +SKIP
        >>> result.metrics["balanced_accuracy"]  # doctest: +SKIP
    """
    import keras

    t0 = time.monotonic()
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    train_set, val_set = load_data(cfg)
    task = train_set.task
    log.info("data: %d train %s, %d val %s", len(train_set), train_set.counts(), len(val_set), val_set.counts())
    cw_mode = cfg.class_weight
    if cw_mode == "auto":
        cw_mode = "balanced" if D.is_imbalanced(train_set) else "none"
    cw = D.class_weights(train_set, cw_mode)
    log.info("class weights (%s): %s", cw_mode, cw)
    atomic.write_json(run / "config.json", cfg.to_dict())
    info = {"task": task, "labels": list(train_set.labels), "negative_label": train_set.negative_label,
            "input_size": list(cfg.input_size), "class_weight": cw, "counts": {"train": train_set.counts(), "val": val_set.counts()}}

    mcfg = ModelConfig(num_classes=len(train_set.labels), task=task, input_size=cfg.input_size, alpha=cfg.alpha,
                       weights=cfg.weights, pooling=cfg.pooling, dropout=cfg.dropout)
    strategy = strategy or distribution_strategy()
    train_ds = D.tf_dataset(train_set, cfg.input_size, cfg.batch_size, True, cfg.seed, cfg.augment, cfg.mixup)
    val_ds = D.tf_dataset(val_set, cfg.input_size, cfg.batch_size, False)
    steps = int(np.ceil(len(train_set) / cfg.batch_size))
    state = json.loads((run / "state.json").read_text()) if resume and (run / "state.json").exists() else None

    with strategy.scope():
        if state and (run / "last.keras").exists():
            model = keras.models.load_model(run / "last.keras")
            log.info("resuming %s from phase %s epoch %d", run, state["phase"], state["epoch"])
        else:
            model = build_classifier(mcfg)
        pretrained = cfg.weights is not None
        if pretrained:
            model.get_layer(BACKBONE).trainable = False
        start = state["epoch"] if state and state["phase"] == "head" else (cfg.epochs if state else 0)
        lr = cfg.lr
        if cfg.schedule == "cyclic":
            from training.lr import triangular_schedule

            lr = triangular_schedule(cfg.lr / 10, cfg.lr, step_size=2 * steps)
        elif cfg.schedule == "cosine":
            lr = cosine_schedule(cfg.lr, steps * max(cfg.epochs - start, 1))
        compile_model(model, task, lr)
    histories = []
    if cfg.epochs > start:
        h = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=start,
                      class_weight=cw, callbacks=_callbacks(cfg, run, "head"), verbose=cfg.verbose)
        histories.append(("head", h.history))
    if pretrained and cfg.finetune_epochs > 0:
        with strategy.scope():
            n = set_finetune(model, cfg.finetune_blocks)
            log.info("phase 2: %d backbone layers trainable (last %d blocks), lr %g", n, cfg.finetune_blocks, cfg.finetune_lr)
            start2 = state["epoch"] if state and state["phase"] == "finetune" else 0
            lr2 = cfg.finetune_lr
            if cfg.schedule == "cosine":
                lr2 = cosine_schedule(cfg.finetune_lr, steps * max(cfg.finetune_epochs - start2, 1))
            compile_model(model, task, lr2)
        h = model.fit(train_ds, validation_data=val_ds, epochs=cfg.finetune_epochs, initial_epoch=start2,
                      class_weight=cw, callbacks=_callbacks(cfg, run, "finetune"), verbose=cfg.verbose)
        histories.append(("finetune", h.history))
    elif not pretrained and cfg.finetune_epochs > 0:
        log.info("phase 2 skipped: the backbone was trained from scratch in phase 1 (weights=None)")

    if (run / "model.keras").exists():
        model = keras.models.load_model(run / "model.keras")
    else:  # no finite validation metric was ever seen; keep what we have
        _save(model, run / "model.keras")
    _write_history(run, histories)
    from training.evaluate import evaluate_keras

    metrics = evaluate_keras(model, val_set, cfg.input_size, task, rule=cfg.threshold_rule, target_recall=cfg.target_recall)
    info["thresholds"] = metrics["thresholds"]
    info["threshold_rule"] = metrics["threshold_rule"]
    info["seconds"] = round(time.monotonic() - t0, 1)
    atomic.write_json(run / "run.json", info)
    atomic.write_json(run / "metrics.json", metrics)
    try:
        from training import plots

        plots.run_plots(run, model, val_set, metrics, cfg.input_size, task)
    except ImportError as exc:  # matplotlib is optional for headless CI images
        log.warning("plots skipped: %s", exc)
    return TrainResult(run, metrics, time.monotonic() - t0)


def _write_history(run: Path, histories) -> None:
    rows = []
    epoch = 0
    for phase, hist in histories:
        n = len(next(iter(hist.values()))) if hist else 0
        for i in range(n):
            epoch += 1
            rows.append({"epoch": epoch, "phase": phase, **{k: float(v[i]) for k, v in hist.items()}})
    atomic.write_json(run / "history.json", rows)


def load_run(path: str | Path):
    """(keras model, run info) from a run directory or a ``model.keras`` inside one."""
    import keras

    path = Path(path)
    run = path if path.is_dir() else path.parent
    model_path = run / "model.keras" if path.is_dir() else path
    if not model_path.is_file():
        raise DataError(f"expected a trained model at {model_path}; none exists (train first: edgecam train DATA)")
    info_path = run / "run.json"
    if not info_path.is_file():
        raise DataError(f"expected run.json beside {model_path} (labels, task, thresholds); none exists")
    from training.lr import _triangular_class

    _triangular_class()  # registers the cyclical schedule so a model trained with it loads

    return keras.models.load_model(model_path, compile=False), json.loads(info_path.read_text())


__all__ = ["TrainConfig", "TrainResult", "train", "load_run", "load_data", "replace"]

"""Pre-flight checks behind ``edgecam train --sanity`` and ``--find-lr``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import TrainConfig


def _setup(cfg: TrainConfig):
    import keras

    from training import data as D
    from training.model import ModelConfig, build_classifier
    from training.train import load_data

    keras.utils.set_random_seed(cfg.seed)
    train_set, _ = load_data(cfg)
    mcfg = ModelConfig(num_classes=len(train_set.labels), task=train_set.task, input_size=cfg.input_size,
                       alpha=cfg.alpha, weights=cfg.weights, pooling=cfg.pooling, dropout=cfg.dropout)
    model = build_classifier(mcfg)
    if train_set.task == "multiclass":
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    else:
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
    return model, loss, train_set, D


def sanity(cfg: TrainConfig, batch: int = 16, max_steps: int = 150) -> dict:
    """Overfit one (balanced) batch; raises SanityError when the loop cannot learn."""
    from training.lr import overfit_one_batch

    model, loss, train_set, D = _setup(cfg)
    rng = np.random.default_rng(cfg.seed)
    cls = train_set.class_index if train_set.task != "multilabel" else train_set.targets.argmax(1)
    idx = np.concatenate([rng.permutation(np.nonzero(cls == k)[0])[: max(1, batch // len(np.unique(cls)))] for k in np.unique(cls)])
    x = D.load_rgb([train_set.paths[i] for i in idx], cfg.input_size).astype(np.float32)
    return overfit_one_batch(model, x, train_set.targets[idx], loss, lr=cfg.lr, max_steps=max_steps)


def find_lr(cfg: TrainConfig, steps: int = 100) -> dict:
    """LR range test on the training data; writes ``plots/lr_finder.png`` and ``lr_finder.json``."""
    from edge import atomic
    from training import plots
    from training.lr import lr_range_test

    model, loss, train_set, D = _setup(cfg)
    ds = D.tf_dataset(train_set, cfg.input_size, cfg.batch_size, True, cfg.seed, cfg.augment)
    result = lr_range_test(model, ds, loss, steps=steps)
    out = Path(cfg.out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "lr_finder.json", result)
    plots.lr_finder(result, out / "plots" / "lr_finder.png")
    return result

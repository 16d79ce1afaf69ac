"""Implementations of the ``edgecam demo``, ``train`` and ``evaluate`` subcommands; edge/cli.py parses them and dispatches here by name.

Each imports what it needs when called.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edge.cli_args import print_json
from edge.errors import ConfigError


def cmd_demo(a) -> int:
    from training.demo import DemoOptions, run_demo

    opts = DemoOptions(out=a.out, seed=a.seed, weights=a.weights, epochs=a.epochs, frames=a.frames, quick=a.quick)
    run_demo(opts)
    return 0


def alpha_for(alpha: float | None, weights: str | None) -> float:
    """An explicit --alpha, else the width in a Keras weights file name (``..._1.0_224_no_top.h5``), else 0.35."""
    import re

    if alpha is not None:
        return alpha
    m = re.search(r"_(\d\.\d+)_\d+_no_top", Path(weights or "").name)
    return float(m.group(1)) if m else 0.35


def _train_head(a) -> int:
    """``edgecam train DATA... --head locate --from-run RUN``: the localisation head on a classifier run's encoder."""
    from training.locate_data import LocateOptions
    from training.locate_train import train_locate

    if not a.from_run:
        raise ConfigError("train --head locate: expected --from-run RUN (a classifier trained on box-labelled frames)")
    if not a.positive:
        raise ConfigError("train --head locate: expected --positive CLASS[,CLASS...] (the vessel classes)")
    opts = LocateOptions(from_run=a.from_run, datasets=tuple(a.data), out=a.out, epochs=a.head_epochs,
                         crop=a.head_crop, per_frame=a.head_crops, background=a.head_background,
                         positive=tuple(p for p in a.positive.split(",") if p),
                         time_budget_s=a.time_budget, seed=a.seed)
    run = train_locate(opts)
    print(f"run: {a.out}  ({run['head']['seconds']:.0f} s)")
    return 0


def cmd_train(a) -> int:
    from edge.datasets import is_box_dataset
    from training.config import TrainConfig

    if getattr(a, "head", None):
        return _train_head(a)
    a.alpha = alpha_for(a.alpha, a.weights)
    boxes = is_box_dataset(a.data[0])
    if not boxes and len(a.data) > 1:
        raise ConfigError(f"train: several DATA folders are read only as box-labelled datasets; {a.data[0]} is not one")
    cfg = TrainConfig(
        data=a.data[0], out=a.out, val=a.val, val_split=a.val_split, positive=a.positive, csv=a.csv,
        input_size=a.input_size, alpha=a.alpha, weights=a.weights,
        pooling=a.pooling or ("cell" if boxes else "max"), dropout=a.dropout,
        batch_size=a.batch_size, epochs=a.epochs, lr=a.lr, schedule=a.schedule, finetune_epochs=a.finetune_epochs,
        finetune_blocks=a.finetune_blocks, finetune_lr=a.finetune_lr, class_weight=a.class_weight,
        augment=a.augment, weather=a.weather, mixup=a.mixup, patience=a.patience, monitor=a.monitor,
        threshold_rule=a.threshold_rule, target_recall=a.target_recall, seed=a.seed, skip_bad=a.skip_bad,
        max_images=a.max_images, time_budget=a.time_budget, verbose=1 if sys.stdout.isatty() else 2,
    )
    if a.find_lr or a.sanity:
        from training.checks import find_lr, sanity

        if a.sanity:
            print(json.dumps(sanity(cfg)))
        if a.find_lr:
            result = find_lr(cfg)
            print(f"suggested learning rate: {result['suggested_lr']:.3g} (plot: {Path(cfg.out) / 'plots' / 'lr_finder.png'})")
            return 0
    from training.train import distribution_strategy, train

    if boxes:
        from training.boxtrain import BoxTrainOptions, train_boxes

        if not a.positive:
            raise ConfigError("train: box-labelled data needs --positive CLASS[,CLASS...] (the vessel classes)")
        opts = BoxTrainOptions(datasets=tuple(a.data), positive=tuple(p for p in a.positive.split(",") if p),
                               label=a.label, scale=a.scale, test_fraction=a.test_fraction, split_by=a.split_by, split_file=a.split_file,
                               mine_frames=a.mine_frames)
        result = train_boxes(cfg, opts, strategy=distribution_strategy(a.strategy), resume=a.resume)
    else:
        result = train(cfg, strategy=distribution_strategy(a.strategy), resume=a.resume)
    m = result.metrics
    print(f"run: {result.run_dir}  ({result.seconds:.0f} s)")
    for k in ("accuracy", "balanced_accuracy", "roc_auc", "pr_auc", "threshold", "threshold_rule"):
        if k in m:
            print(f"  {k:<18} {m[k]:.4f}" if isinstance(m[k], float) else f"  {k:<18} {m[k]}")
    return 0


def cmd_evaluate(a) -> int:
    from edge.datasets import is_box_dataset

    if is_box_dataset(a.data[0]):
        return _evaluate_boxes(a)
    if len(a.data) > 1:
        raise ConfigError(f"evaluate: several DATA folders are read only as box-labelled datasets; {a.data[0]} is not one")
    from training.evaluate import evaluate_path

    r = evaluate_path(a.model, a.data[0], a.positive, a.tta, skip_bad=a.skip_bad)
    if a.json:
        print_json(r)
        return 0
    tta = f", TTA over {' and '.join(r['tta'])} flips" if r["tta"] else ""
    skipped = f", {r['skipped']} unreadable left out" if r.get("skipped") else ""
    print(f"{r['model']} on {r['data']} ({r['n']} images{tta}{skipped})")
    for k in ("accuracy", "exact_match", "balanced_accuracy", "roc_auc", "pr_auc", "threshold", "threshold_rule"):
        if k in r:
            v = r[k]
            print(f"  {k:<18} {v:.4f}" if isinstance(v, float) else f"  {k:<18} {v}")
    for name, pc in r.get("per_class", {}).items():
        if "precision" in pc:
            print(f"  {name:<18} P {pc['precision']:.3f}  R {pc['recall']:.3f}  F1 {pc['f1']:.3f}  n {pc['support']}")
    return 0


def _evaluate_boxes(a) -> int:
    """Localisation figures of every artifact of ``a.model`` on box-labelled frames (no TensorFlow needed)."""
    from edge.boxeval import BoxEvalOptions, evaluate_boxes, manifests_of

    if not a.positive:
        raise ConfigError("evaluate: box-labelled data needs --positive CLASS[,CLASS...] (the vessel classes)")
    split = a.split
    if split is None and Path(a.model).is_dir() and (Path(a.model) / "split.json").is_file():
        split = str(Path(a.model) / "split.json")  # a run folder: judge it on its own held-out frames
    opts = BoxEvalOptions(positive=tuple(p for p in a.positive.split(",") if p), split=split, split_name=a.split_name,
                          scale=a.scale, grid=a.grid, threshold=a.threshold,
                          head_passes=a.head_passes)
    out = a.out or str((Path(a.model) if Path(a.model).is_dir() else manifests_of(a.model)[0].parent) / "boxeval")
    doc = evaluate_boxes(a.model, list(a.data), opts, out)
    if a.json:
        print_json(doc)
        return 0
    print(Path(out, "boxeval.md").read_text())
    print(f"written: {out}/boxeval.json, boxeval.md, pr_*.png, frames_*.png")
    return 0

"""Evaluation with one set of metrics for Keras models and exported artifacts alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge import metrics as M
from edge.manifest import Task
from training.data import LabeledImages, load_rgb


def report(task: str, targets: np.ndarray, probs: np.ndarray, labels, negative_label=None,
           rule: str = "youden", target_recall: float = 0.95, thresholds=None, fallback_argmax: bool = False) -> dict:
    """Metrics for ``probs`` (N, C) against ``targets`` (N, C), with the thresholds used.

    ``thresholds`` given (e.g. from training) are applied as they are; otherwise
    they are chosen on this data by ``rule``.
    """
    labels = list(labels)
    if task == Task.BINARY:
        r = M.binary_report(targets[:, 0], probs[:, 0], None if thresholds is None else thresholds[0], rule,
                            (negative_label or "negative", labels[0]), target_recall)
        r["thresholds"] = [r["threshold"]]
    elif task == Task.MULTICLASS:
        r = M.multiclass_report(targets.argmax(1), probs, labels)
        r["thresholds"] = [0.0] * len(labels)
    else:
        r = M.multilabel_report(targets, probs, labels, rule, fallback_argmax)
    return r


def tta_flips(augment: str | None) -> tuple[str, ...]:
    """The flips test-time augmentation averages over: those training taught the model to ignore.

    ``aerial`` training flips both ways (top-down views have no up); every
    other preset flips left-right only, since an upside-down ship photo is
    not a view the model was trained on, and averaging it in hurts.
    """
    return ("horizontal", "vertical") if augment == "aerial" else ("horizontal",)


def tta_views(images: np.ndarray, flips: tuple[str, ...]) -> list[np.ndarray]:
    """The images, then one flipped copy per flip in ``flips``."""
    views = [images]
    for flip in flips:
        if flip not in ("horizontal", "vertical"):
            raise ValueError(f"expected flips 'horizontal' or 'vertical'; received {flip!r}")
        views.append(np.ascontiguousarray(images[:, :, ::-1] if flip == "horizontal" else images[:, ::-1]))
    return views


def predict_keras(model, images: np.ndarray, task: str, batch_size: int = 64, tta: bool = False,
                  flips: tuple[str, ...] = ("horizontal",)) -> np.ndarray:
    """Probabilities from a logits model on raw 0..255 images; ``tta`` averages over ``flips`` too."""
    import tensorflow as tf

    def run(x):
        logits = model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0)
        return tf.nn.softmax(logits).numpy() if task == Task.MULTICLASS else tf.sigmoid(logits).numpy()

    views = tta_views(images, flips) if tta else [images]
    return np.mean([run(v) for v in views], axis=0)


def evaluate_keras(model, data: LabeledImages, size, task: str, rule: str = "youden", target_recall: float = 0.95,
                   thresholds=None, tta: bool = False) -> dict:
    images = load_rgb(list(data.paths), tuple(size))
    probs = predict_keras(model, images, task, tta=tta)
    return report(task, data.targets, probs, data.labels, data.negative_label, rule, target_recall, thresholds)


def predict_artifact(manifest_path: str | Path, images: np.ndarray, batch_size: int = 16, tta: bool = False,
                     backend: str | None = None, flips: tuple[str, ...] = ("horizontal",)) -> np.ndarray:
    """Probabilities from an exported artifact through the edge runtime's backend."""
    from edge.backends import create_backend
    from edge.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    with create_backend(manifest, backend) as be:
        def run(x):
            return np.concatenate([be.infer(x[i : i + batch_size])["scores"] for i in range(0, len(x), batch_size)])

        views = tta_views(images, flips) if tta else [images]
        return np.mean([run(v) for v in views], axis=0)


def _training_augment(run_dir: Path | None) -> str | None:
    """The augmentation preset a run directory was trained with, if it says."""
    if run_dir is None or not (run_dir / "config.json").is_file():
        return None
    import json

    try:
        return json.loads((run_dir / "config.json").read_text()).get("augment")
    except (OSError, ValueError):
        return None


def evaluate_path(model_path: str | Path, data_dir: str | Path, positive: str | None = None, tta: bool = False,
                  use_training_thresholds: bool = True, skip_bad: bool = False) -> dict:
    """``edgecam evaluate``: a ``model.keras`` / run directory or an artifact's manifest, on a labelled folder.

    Every image is checked first: the unreadable ones are listed together in one error, or with
    ``skip_bad`` left out and counted (``skipped``).
    """
    from training.data import drop_bad, from_folder

    model_path = Path(model_path)
    is_keras = model_path.is_dir() and (model_path / "model.keras").exists() or model_path.suffix == ".keras"
    if is_keras:
        from training.run import load_run

        model, info = load_run(model_path)
        run_dir = model_path if model_path.is_dir() else model_path.parent
        size = info.input_size
        task, labels, negative = info.task, list(info.labels), info.negative_label
        thr = list(info.thresholds) if use_training_thresholds else None
    else:
        from edge.manifest import load_manifest

        m = load_manifest(model_path)
        run_dir = Path(m.extra["source_run"]) if m.extra.get("source_run") else None
        size, task, labels, negative = m.input_size, m.task, list(m.labels), m.negative_label
        thr = list(m.thresholds) if use_training_thresholds else None
    data = from_folder(data_dir, positive if positive is not None else (labels[0] if task == Task.BINARY else None))
    if list(data.labels) != list(labels):
        from edge.errors import DataError

        raise DataError(f"the model's labels are {labels}; {data_dir} gives {list(data.labels)} (use --positive)")
    checked = drop_bad(data, skip_bad, trainable=False)
    skipped, data = len(data) - len(checked), checked
    images = load_rgb(list(data.paths), size)
    flips = tta_flips(_training_augment(run_dir))
    if is_keras:
        probs = predict_keras(model, images, task, tta=tta, flips=flips)
    else:
        probs = predict_artifact(model_path, images, tta=tta, flips=flips)
    r = report(task, data.targets, probs, labels, negative, thresholds=thr)
    r["model"] = str(model_path)
    r["data"] = str(data_dir)
    r["tta"] = list(flips) if tta else False
    r["skipped"] = skipped
    return r

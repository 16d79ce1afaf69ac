"""Labelled image sets and the tf.data pipeline that feeds training.

Three sources: a folder per class (optionally turned one-vs-rest with
``positive``), a CSV with one 0/1 column per class (multi-label), and the
built-in synthetic scenes (which are written as a folder per class, so they go
through the same path as a user's data).
"""

from __future__ import annotations

import csv
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import DataError
from edge.imageio import class_folders
from edge.manifest import Task

log = logging.getLogger("edgecam.training")


@dataclass(frozen=True)
class LabeledImages:
    """Image paths with a label matrix.

    Attributes:
        paths: N image paths.
        targets: (N, C) float32; binary tasks have C = 1 (the positive class).
        labels: the C label names.
        task: ``binary``, ``multiclass`` or ``multilabel``.
        negative_label: name of the negative side of a binary task.
    """

    paths: tuple[str, ...]
    targets: np.ndarray
    labels: tuple[str, ...]
    task: str
    negative_label: str | None = None

    def __post_init__(self) -> None:
        t = np.asarray(self.targets, np.float32)
        if t.ndim != 2 or len(t) != len(self.paths) or t.shape[1] != len(self.labels):
            raise DataError(
                f"expected targets ({len(self.paths)}, {len(self.labels)}); received {t.shape}"
            )
        object.__setattr__(self, "targets", t)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def class_index(self) -> np.ndarray:
        """Integer class per image (binary: 0/1, multi-class: argmax); not for multi-label."""
        if self.task == Task.BINARY:
            return self.targets[:, 0].astype(np.int64)
        return self.targets.argmax(1)

    def counts(self) -> dict[str, int]:
        if self.task == Task.BINARY:
            pos = int(self.targets[:, 0].sum())
            return {self.negative_label or "negative": len(self) - pos, self.labels[0]: pos}
        return {n: int(c) for n, c in zip(self.labels, self.targets.sum(0))}

    def subset(self, idx: np.ndarray) -> "LabeledImages":
        idx = np.asarray(idx)
        return LabeledImages(tuple(self.paths[i] for i in idx), self.targets[idx], self.labels, self.task, self.negative_label)


def from_folder(root: str | Path, positive: str | None = None, task: str | None = None) -> LabeledImages:
    """Read a folder-per-class tree.

    With ``positive`` the task is one-vs-rest binary. Two classes of which one
    is named ``no_X`` are binary with ``X`` positive. Otherwise multi-class.
    """
    classes = class_folders(root)
    names = list(classes)
    if len(names) < 2:
        raise DataError(f"expected at least two class folders in {root}; found only {names}")
    if positive is not None:
        if positive not in classes:
            raise DataError(f"--positive {positive!r} is not a class folder of {root}; classes are {names}")
        negative = next((n for n in names if n == f"no_{positive}"), None) if len(names) == 2 else None
        negative = negative or ("rest" if len(names) > 2 else next(n for n in names if n != positive))
    elif len(names) == 2 and task in (None, Task.BINARY):
        no = [n for n in names if n.startswith("no_")]
        positive = no[0][3:] if no and no[0][3:] in names else names[1]
        negative = next(n for n in names if n != positive)
    else:
        paths, idx = [], []
        for i, n in enumerate(names):
            paths += [str(p) for p in classes[n]]
            idx += [i] * len(classes[n])
        targets = np.eye(len(names), dtype=np.float32)[idx]
        return LabeledImages(tuple(paths), targets, tuple(names), Task.MULTICLASS)
    paths, y = [], []
    for n in names:
        paths += [str(p) for p in classes[n]]
        y += [1.0 if n == positive else 0.0] * len(classes[n])
    return LabeledImages(tuple(paths), np.asarray(y, np.float32)[:, None], (positive,), Task.BINARY, negative)


def from_csv(csv_path: str | Path, image_root: str | Path | None = None) -> LabeledImages:
    """Multi-label CSV: a ``path`` column then one 0/1 column per class."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"expected a label CSV at {csv_path}; it does not exist")
    root = Path(image_root) if image_root else csv_path.parent
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2 or rows[0][0] != "path" or len(rows[0]) < 3:
        raise DataError(f"expected a header 'path,<class>,<class>,...' and rows in {csv_path}; received {rows[:1]}")
    names = tuple(rows[0][1:])
    paths, t = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise DataError(f"{csv_path}:{lineno}: expected {len(rows[0])} fields; received {len(row)}")
        try:
            vals = [float(v) for v in row[1:]]
        except ValueError as exc:
            raise DataError(f"{csv_path}:{lineno}: expected 0/1 values; received {row[1:]}") from exc
        if any(v not in (0.0, 1.0) for v in vals):
            raise DataError(f"{csv_path}:{lineno}: expected 0/1 values; received {row[1:]}")
        p = root / row[0]
        if not p.is_file():
            raise DataError(f"{csv_path}:{lineno}: image {p} does not exist")
        paths.append(str(p))
        t.append(vals)
    return LabeledImages(tuple(paths), np.asarray(t, np.float32), names, Task.MULTILABEL)


def stratified_split(data: LabeledImages, val_fraction: float, seed: int = 0) -> tuple[LabeledImages, LabeledImages]:
    """Split keeping each class's share (by class index; multi-label by first positive label)."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val split: expected a fraction in (0, 1); received {val_fraction}")
    rng = np.random.default_rng(seed)
    key = data.targets.argmax(1) if data.task == Task.MULTILABEL else data.class_index
    train_idx, val_idx = [], []
    for k in np.unique(key):
        idx = np.nonzero(key == k)[0]
        rng.shuffle(idx)
        n_val = max(1, int(round(len(idx) * val_fraction)))
        val_idx += list(idx[:n_val])
        train_idx += list(idx[n_val:])
    return data.subset(np.sort(train_idx)), data.subset(np.sort(val_idx))


# What training's decoder (tf.io.decode_image) reads, told by the first bytes, as it tells them itself:
# a file's name says nothing (a .png may hold a TIFF). OpenCV reads more (TIFF, PPM, ...), so
# OpenCV decoding a file is not enough to train on it.
_TRAINABLE = {"JPEG": (b"\xff\xd8\xff",), "PNG": (b"\x89PNG\r\n\x1a\n",), "GIF": (b"GIF87a", b"GIF89a"), "BMP": (b"BM",)}
_OTHER = {"TIFF": (b"II*\x00", b"MM\x00*"), "JPEG 2000": (b"\x00\x00\x00\x0cjP  ",), "PNM": (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6")}
TRAINABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")


def image_format(head: bytes) -> str:
    """The format named by a file's first bytes: one of ``TRAINABLE_FORMATS``, another name, or ``"unknown"``.

    Example:
        >>> image_format(b"II*\\x00rest"), image_format(b"GIF89a..."), image_format(b"hello")
        ('TIFF', 'GIF', 'unknown')
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    for table in (_TRAINABLE, _OTHER):
        for name, magics in table.items():
            if any(head.startswith(m) for m in magics):
                return name
    return "unknown"


def _check_one(path: str, trainable: bool = True) -> str | None:
    """None if training (``trainable``) or OpenCV alone can decode ``path``; else why not."""
    import cv2

    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if data.size == 0:
        return "empty (0 bytes)"
    kind = image_format(data[:16].tobytes())
    if trainable and kind not in TRAINABLE_FORMATS:
        return f"{kind} format, which training cannot decode" if kind != "unknown" else "not an image training can decode"
    if cv2.imdecode(data, cv2.IMREAD_REDUCED_COLOR_2) is None:
        return f"corrupt {kind}" if kind != "unknown" else "corrupt or not an image"
    return None


def check_images(paths: tuple[str, ...] | list[str], skip_bad: bool = False, workers: int = 4,
                 trainable: bool = True) -> list[str]:
    """Check every image once, before training: its format (what training decodes) and that it decodes.

    A file in a format training cannot decode (TIFF, say, which OpenCV reads
    but ``tf.io.decode_image`` does not), empty, unreadable or corrupt is
    listed in the error, all of them at once with the reason for each. With
    ``skip_bad`` they are logged and dropped. Returns the good paths.
    ``trainable=False`` asks only that OpenCV decodes them (evaluation reads
    images with OpenCV, as the runtime does).
    """
    with ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(lambda p: _check_one(p, trainable), paths))
    bad = [(p, r) for p, r in zip(paths, reasons) if r is not None]
    if bad and not skip_bad:
        listed = "\n  ".join(f"{p}: {r}" for p, r in bad[:20]) + ("\n  …" if len(bad) > 20 else "")
        what = f"training can decode ({', '.join(TRAINABLE_FORMATS)})" if trainable else "OpenCV can decode"
        raise DataError(
            f"expected images {what}; {len(bad)} of {len(paths)} "
            f"are not:\n  {listed}\nConvert them (e.g. to PNG), fix or remove them, or pass --skip-bad to skip them."
        )
    if bad:
        log.warning("skipping %d image(s) training cannot decode: %s", len(bad), ", ".join(f"{p} ({r})" for p, r in bad[:5]))
    return [p for p, r in zip(paths, reasons) if r is None]


def drop_bad(data: LabeledImages, skip_bad: bool, good: set[str] | None = None, trainable: bool = True) -> LabeledImages:
    """``data`` without the images :func:`check_images` refuses (``good``: paths already checked)."""
    good = set(check_images(data.paths, skip_bad, trainable=trainable)) if good is None else good
    if all(p in good for p in data.paths):
        return data
    return data.subset(np.array([i for i, p in enumerate(data.paths) if p in good]))


def drop_bad_all(sets: list[LabeledImages], skip_bad: bool) -> list[LabeledImages]:
    """:func:`drop_bad` over several sets (training and validation) checked at once, so one error lists them all."""
    good = set(check_images([p for d in sets for p in d.paths], skip_bad))
    return [drop_bad(d, skip_bad, good) for d in sets]


def class_weights(data: LabeledImages, mode: str = "balanced") -> dict[int, float] | None:
    """Keras ``class_weight`` from counts: ``n / (k * count_k)`` ("balanced").

    Binary tasks get weights for 0 and 1; multi-class one per class; multi-label
    is left to per-class thresholds (Keras cannot weight multi-hot targets).
    """
    if mode == "none" or data.task == Task.MULTILABEL:
        return None
    idx = data.class_index
    k = 2 if data.task == Task.BINARY else len(data.labels)
    counts = np.bincount(idx, minlength=k).astype(np.float64)
    if (counts == 0).any():
        raise DataError(f"class weights: every class needs images; counts are {counts.astype(int).tolist()}")
    w = len(idx) / (k * counts)
    return {i: float(v) for i, v in enumerate(w)}


def is_imbalanced(data: LabeledImages, ratio: float = 1.5) -> bool:
    if data.task == Task.MULTILABEL:
        return False
    counts = np.bincount(data.class_index)
    counts = counts[counts > 0]
    return bool(counts.max() / counts.min() >= ratio)


def load_rgb(paths: list[str], size: tuple[int, int]) -> np.ndarray:
    """Decode and resize images to (N, h, w, 3) uint8 with OpenCV (the runtime's resize)."""
    from edge.imageio import read_image
    from edge.preprocess import fit

    return np.stack([fit(read_image(p), size)[0] for p in paths]) if paths else np.zeros((0, *size, 3), np.uint8)


AUGMENT_PRESETS = ("aerial", "upright", "none")


def augmentation(preset: str = "aerial", strength: float = 1.0):
    """Keras preprocessing layers; active only when called with ``training=True``.

    ``aerial`` (seen from above: drones, masts, satellites) flips both ways and
    rotates freely, since a ship has no "up" there; ``upright`` (side views,
    such as CIFAR photos) flips horizontally and tilts a few degrees only.
    """
    import keras

    s = float(strength)
    aerial = preset == "aerial"
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical" if aerial else "horizontal"),
            keras.layers.RandomRotation((0.5 if aerial else 0.03) * s, fill_mode="reflect"),
            keras.layers.RandomTranslation(0.1 * s, 0.1 * s, fill_mode="reflect"),
            keras.layers.RandomZoom((-0.15 * s, 0.15 * s), fill_mode="reflect"),
            keras.layers.RandomContrast(0.2 * s),
            keras.layers.RandomBrightness(0.15 * s, value_range=(0.0, 255.0)),
        ],
        name="augment",
    )


def tf_dataset(data: LabeledImages, size: tuple[int, int], batch_size: int, training: bool, seed: int = 0,
               augment: bool | str = True, mixup: float = 0.0, cache: bool = True, weather: str = "none"):
    """tf.data pipeline: parallel decode, resize, cache, (augment, weather, mixup), batch, prefetch."""
    import tensorflow as tf

    AUTOTUNE = tf.data.AUTOTUNE
    paths, targets = list(data.paths), data.targets
    if training:
        # Files come grouped by class folder; a bounded shuffle buffer over that
        # order would feed whole batches of one class. Permute the list first.
        order = np.random.default_rng(seed).permutation(len(paths))
        paths, targets = [paths[i] for i in order], targets[order]
    ds = tf.data.Dataset.from_tensor_slices((paths, targets))

    def decode(path, y):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        img = tf.image.resize(img, size, method="area", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.float32), y

    ds = ds.map(decode, num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(len(data), 4096), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    if training and augment and augment != "none":
        aug = augmentation("aerial" if augment is True else augment)
        ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=AUTOTUNE)
    if training and weather != "none":
        from training.weather import weather_augmentation

        conditions = weather_augmentation(weather)
        ds = ds.map(lambda x, y: (conditions(x), y), num_parallel_calls=AUTOTUNE)
    if training and mixup > 0:
        ds = ds.map(lambda x, y: _mixup(x, y, mixup, seed), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def _mixup(x, y, alpha: float, seed: int):
    import tensorflow as tf

    n = tf.shape(x)[0]
    # Beta(alpha, alpha) as a ratio of two Gamma draws.
    g1 = tf.random.gamma([n], alpha)
    g2 = tf.random.gamma([n], alpha)
    lam = g1 / (g1 + g2)
    perm = tf.random.shuffle(tf.range(n))
    lx = tf.reshape(lam, [-1, 1, 1, 1])
    ly = tf.reshape(lam, [-1, 1])
    return x * lx + tf.gather(x, perm) * (1 - lx), y * ly + tf.gather(y, perm) * (1 - ly)

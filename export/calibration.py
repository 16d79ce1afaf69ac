"""Calibration images for full-integer quantisation: real, stratified, reported."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import DataError
from edge.imageio import IMAGE_SUFFIXES

log = logging.getLogger("edgecam.export")

MIN_IMAGES = 8


@dataclass(frozen=True)
class CalibrationSet:
    images: np.ndarray  # (N, h, w, 3) uint8, raw RGB
    per_class: dict[str, int]
    source: str

    def coverage_line(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.per_class.items())
        return f"calibration: {len(self.images)} images from {self.source} ({parts})"

    def hold_out(self, n: int) -> tuple["CalibrationSet", np.ndarray]:
        """(the set without ``n`` images, those ``n``): the last same share of every class is held out.

        The held-out images measure a quantised model against its float one
        without having set its ranges.
        """
        total = len(self.images)
        if not 0 < n < total:
            raise DataError(f"calibration hold-out: expected 0 < n < {total} images; received {n}")
        keep, held, counts, start = [], [], {}, 0
        for name, count in self.per_class.items():
            k = min(count - 1, int(round(count * n / total))) if count > 1 else 0
            keep.append(np.arange(start, start + count - k))
            held.append(np.arange(start + count - k, start + count))
            counts[name] = count - k
            start += count
        return CalibrationSet(self.images[np.concatenate(keep)], counts, self.source), self.images[np.concatenate(held)]


def collect(root: str | Path, size: tuple[int, int], n: int = 300, seed: int = 0,
            expected_classes: list[str] | None = None, min_images: int = MIN_IMAGES) -> CalibrationSet:
    """Pick up to ``n`` images from ``root``, the same number from each class folder.

    ``root`` may hold class sub-folders (``root/<class>/*.jpg``), a ``train`` or
    ``val`` split of them, or images directly.

    Raises:
        DataError: the folder is missing or empty, or has fewer than ``min_images`` images.
    """
    from training.data import load_rgb

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"calibration: expected a folder of images at {root}; it does not exist")
    if not any(root.iterdir()):
        raise DataError(f"calibration: folder {root} is empty; expected at least {min_images} real images")
    for split in ("val", "train"):
        if (root / split).is_dir() and not _images(root):
            root = root / split
            break
    groups: dict[str, list[Path]] = {}
    direct = _images(root)
    if direct:
        groups["(unlabelled)"] = direct
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = _images(d, recursive=True)
        if files:
            groups[d.name] = files
    total = sum(len(v) for v in groups.values())
    if total < min_images:
        raise DataError(
            f"calibration: expected at least {min_images} images in {root} (or its class folders); found {total}"
        )
    if expected_classes:
        missing = [c for c in expected_classes if c not in groups]
        if missing and "(unlabelled)" not in groups:
            log.warning("calibration: no images of class(es) %s in %s; int8 ranges may not cover them", missing, root)
    rng = np.random.default_rng(seed)
    per = max(1, n // len(groups))
    chosen: dict[str, list[Path]] = {}
    for name, files in groups.items():
        idx = rng.permutation(len(files))[:per]
        chosen[name] = [files[i] for i in sorted(idx)]
    paths = [str(p) for files in chosen.values() for p in files]
    images = load_rgb(paths, tuple(size))
    # the caller logs the coverage once it knows how many images it holds out (export_run)
    return CalibrationSet(images, {k: len(v) for k, v in chosen.items()}, str(root))


def _images(folder: Path, recursive: bool = False) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

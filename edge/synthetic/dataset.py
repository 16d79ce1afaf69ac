"""Still scenes (:func:`render_scene`) and a folder-per-class dataset of them with a ``labels.csv`` of boxes."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from edge.atomic import write_text
from edge.errors import DataError
from edge.synthetic.geometry import _affine, _apply, _clipped_area, _fill
from edge.synthetic.sea import _finish, _turbulence, _World
from edge.synthetic.ships import _draw_ships, _make_ship
from edge.synthetic.spec import _SEED_MAX, SceneSpec, _check_float, _check_int

__all__ = ["LABELS", "DatasetInfo", "generate_dataset", "render_scene"]

LABELS = ("no_ship", "ship")
_SPLITS = ("train", "val")


def _place_ships(rng: np.random.Generator, spec: SceneSpec, n: int, occupied: np.ndarray) -> list:
    h, w = spec.height, spec.width
    occ = occupied.copy()
    placed = []
    for _ in range(n):
        ship = _make_ship(rng, spec.ship_length, spec.beam_ratio)
        best = None
        for _ in range(60):
            a = _affine(np.zeros(2), rng.uniform(0, 2 * math.pi))
            hull = _apply(a, ship.parts[0][0])
            lo, hi = hull.min(axis=0), hull.max(axis=0)
            # centres that keep the hull's box inside, widened by a quarter of it: few rejections below
            slack = 0.25 * (hi - lo)
            a[:, 2] = rng.uniform(np.minimum(-lo - slack, [w / 2, h / 2]), np.maximum([w, h] - hi + slack, [w / 2, h / 2]))
            hull = hull + a[:, 2]
            outside = (hull.min(axis=0) < 0).any() or (hull.max(axis=0) > [w, h]).any()
            if outside and _clipped_area(hull, w, h) < spec.min_inside * ship.area:
                continue
            pts = np.round(_apply(a, ship.samples)).astype(int)
            keep = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
            hits = int(occ[pts[keep, 1], pts[keep, 0]].sum())  # on land, a rock or another ship
            if best is None or hits < best[0]:
                best = (hits, a)
            if hits == 0:
                break
        # a centred ship always fits: ship_length max <= min(height, width)
        a = best[1] if best is not None else _affine(np.array([w / 2, h / 2]), rng.uniform(0, 2 * math.pi))
        placed.append((ship, a))
        _fill(occ, _apply(a, ship.parts[0][0] * 1.25), 1)
    return placed


def render_scene(rng: np.random.Generator, spec: SceneSpec, n_ships: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one still sea scene with ``n_ships`` ships.

    The background (water, weather, hard negatives) depends only on ``rng``, not on ``n_ships``:
    the same generator state with 0 and with 1 ship gives the same sea.

    Args:
        rng: the generator everything is drawn from (three child seeds are taken from it).
        spec: image size and ship options.
        n_ships: number of ships, 0..``spec.max_ships``; each is >= ``spec.min_inside`` inside.

    Returns:
        ``(image, boxes)``: RGB uint8 (H, W, 3) and float32 (n_ships, 4) ``x0, y0, x1, y1`` boxes of
        the drawn hull and superstructure pixels, x1/y1 exclusive, clipped to the image.

    Example:
        >>> image, boxes = render_scene(np.random.default_rng(3), SceneSpec(), 2)
        >>> bool(((boxes[:, 2:] > boxes[:, :2]) & (boxes[:, 2:] <= 160)).all())
        True
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, received {type(rng).__name__}")
    if not isinstance(spec, SceneSpec):
        raise TypeError(f"spec: expected a SceneSpec, received {type(spec).__name__}")
    _check_int("n_ships", n_ships, 0, spec.max_ships)
    bg, ships, post = (np.random.default_rng(s) for s in rng.integers(0, _SEED_MAX, size=3))
    world = _World(bg, spec.height, spec.width, spec)
    img = world.compose(bg.uniform(0, 600), post)
    placed = _place_ships(ships, spec, n_ships, world.occupied)
    has_wake = spec.wakes and (world.strays or any(s.wake > 0 for s, _ in placed))
    texture = _turbulence(world.fine) if has_wake else None
    boxes, _ = _draw_ships(img, placed, world.strays, world.water, world.sun, spec, texture)
    return _finish(img, post, world.look), boxes


# ----------------------------------------------------------------------------- dataset of stills
@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`generate_dataset` wrote.

    Attributes:
        root: the output folder.
        labels_csv: ``root / "labels.csv"``.
        counts: images per split and label, e.g. ``counts["train"]["ship"]``.
        images: image paths per split, in generation order.
        n_boxes: ship boxes in ``labels.csv``.
    """

    root: Path
    labels_csv: Path
    counts: Mapping[str, Mapping[str, int]]
    images: Mapping[str, tuple[Path, ...]]
    n_boxes: int

    def count(self, split: str, label: str) -> int:
        """Number of ``label`` images in ``split``; unknown names raise ``KeyError``."""
        return self.counts[split][label]


def _write_atomic(path: Path, data: bytes) -> None:
    # temp name + os.replace, like edge.atomic, minus the fsync: thousands of small regenerable
    # files; an interrupted process still leaves only whole files, and fsync tripled the write time
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _n_ships(rng: np.random.Generator, max_ships: int) -> int:
    weights = 1.0 / np.arange(1, max_ships + 1) ** 1.2  # one ship is the common case
    return int(rng.choice(max_ships, p=weights / weights.sum())) + 1


def _plan(root: Path, sizes: tuple[int, int], seed: int, ship_fraction: float) -> list[tuple[int, str, int, bool, str]]:
    """``(split_index, split, i, positive, relative path)`` of every image; refuses a folder holding other class images."""
    plan = []
    for split_index, (split, n) in enumerate(zip(_SPLITS, sizes)):
        positive = np.zeros(n, bool)
        positive[np.random.default_rng([seed, 1, split_index]).permutation(n)[: int(n * ship_fraction + 0.5)]] = True
        plan += [(split_index, split, i, bool(p), f"{split}/{LABELS[int(p)]}/{i:05d}.png") for i, p in enumerate(positive)]
    planned = {root / rel for *_, rel in plan}
    stale = sorted(p for split in _SPLITS for label in LABELS for p in (root / split / label).glob("*.png") if p not in planned)
    if stale:  # a folder-per-class loader would silently mix them in
        raise DataError(f"{root}: expected no class images other than the {len(planned)} this run writes, "
                        f"received {len(stale)} more (e.g. {stale[0]}); use an empty folder")
    return plan


def _csv_text(rows: list[list[str]]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["split", "path", "label", "x0", "y0", "x1", "y1"])
    writer.writerows(rows)
    return text.getvalue()


def generate_dataset(out_dir: str | os.PathLike[str], n_train: int = 1200, n_val: int = 400,
                     spec: SceneSpec = SceneSpec(), seed: int = 0, ship_fraction: float = 0.5) -> DatasetInfo:
    """Write a folder-per-class dataset of PNG stills and a ``labels.csv`` of ship boxes.

    Layout: ``out_dir/{train,val}/{ship,no_ship}/NNNNN.png`` (NNNNN numbers the images of a split)
    and ``out_dir/labels.csv`` with columns ``split,path,label,x0,y0,x1,y1``: one row per ship
    box, and one row with empty box fields per ``no_ship`` image. Every file is written to a
    temporary name and renamed, so an interrupted run leaves whole PNGs and no ``labels.csv``
    (written last: its presence marks a complete dataset). Image ``i`` of a split depends only on
    ``(seed, split, i)`` and its class, so the bytes are the same on every run.

    Args:
        out_dir: output folder, created if missing.
        n_train: images in ``train``.
        n_val: images in ``val``.
        spec: scene options.
        seed: non-negative seed.
        ship_fraction: share of ``ship`` images per split, rounded half up.

    Returns:
        A :class:`DatasetInfo` with counts and paths.

    Raises:
        SpecError: a count, seed or fraction is out of range.
        DataError: ``out_dir`` already holds class images this run would not overwrite.

    Example:
        >>> info = generate_dataset("/tmp/ships", n_train=8, n_val=4)  # doctest: +SKIP
        >>> info.count("train", "ship"), info.count("val", "no_ship")  # doctest: +SKIP
        (4, 2)
    """
    _check_int("n_train", n_train, 0, 10**7)
    _check_int("n_val", n_val, 0, 10**7)
    _check_int("seed", seed, 0, _SEED_MAX)
    _check_float("ship_fraction", ship_fraction, 0.0, 1.0)
    if not isinstance(spec, SceneSpec):
        raise TypeError(f"spec: expected a SceneSpec, received {type(spec).__name__}")
    root = Path(out_dir)
    plan = _plan(root, (n_train, n_val), seed, ship_fraction)
    rows, images = [], {split: [] for split in _SPLITS}
    counts = {split: {label: 0 for label in LABELS} for split in _SPLITS}
    for split_index, split, i, positive, rel in plan:
        rng = np.random.default_rng([seed, 2, split_index, i])
        image, boxes = render_scene(rng, spec, _n_ships(rng, spec.max_ships) if positive else 0)
        label = LABELS[int(positive)]
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise DataError(f"{rel}: OpenCV could not encode a {image.shape} {image.dtype} image as PNG")
        _write_atomic(root / rel, png.tobytes())
        images[split].append(root / rel)
        counts[split][label] += 1
        rows += [[split, rel, label, *(f"{v:g}" for v in box)] for box in boxes] or [[split, rel, label, "", "", "", ""]]
    labels_csv = write_text(root / "labels.csv", _csv_text(rows))
    return DatasetInfo(root, labels_csv, counts, {k: tuple(v) for k, v in images.items()},
                       sum(1 for r in rows if r[3] != ""))

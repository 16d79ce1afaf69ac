"""Training crops cut from box-labelled frames at the scale the runtime will see.

A classifier trained on crops and run on whole frames only agrees with itself
when both sides see vessels at the same size. One number, ``scale`` (model
pixels per native frame pixel), fixes that: a crop of ``input_size`` model
pixels covers ``input_size / scale`` frame pixels, and ``edgecam run``
resizes whole frames by the same factor (the manifest records it).

Crops are labelled from the boxes:
- **positive**: the window holds a whole vessel box (jittered position; a
  vessel larger than the window gets a larger window, shrunk to fit);
- **negative**: the window touches no vessel box. Some are cut at the base
  size anywhere, some are wider views of sea, sky and shore (``context``),
  and some are centred on boxes of the other classes (people, cars), the hard
  negatives a harbour is full of;
- windows that cut through a vessel are never used: they are neither.

Crops are written as a folder per class, the layout every other edgecam
training run reads, so the same data pipeline trains on them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge.checks import non_negative_int
from edge.errors import ConfigError, DataError

log = logging.getLogger("edgecam.training")


@dataclass(frozen=True)
class TileOptions:
    """How crops are cut.

    Attributes:
        input_size: side of a crop in model pixels (the training input).
        scale: model pixels per native frame pixel, shared with ``edgecam run``.
        positives_per_box: jittered crops per vessel box.
        negatives_per_frame: crops anywhere that touch no vessel.
        hard_per_box: crops centred on each box of a non-vessel class.
        max_hard_per_frame: other-class boxes sampled per frame at most.
        context: window sizes (multiples of the base window) for negatives;
            the larger ones show wide sea, sky and shore.
        min_box: vessel boxes narrower and lower than this (native px) are
            too small to be a positive; they still keep negatives away.
        margin: native pixels around every vessel box that negatives avoid.
        seed: random seed (crops are reproducible).
    """

    input_size: int = 128
    scale: float = 1.5
    positives_per_box: int = 2
    negatives_per_frame: int = 10
    hard_per_box: int = 1
    max_hard_per_frame: int = 6
    context: tuple[float, ...] = (1.0, 1.0, 1.0, 2.0, 3.0)
    min_box: float = 4.0
    margin: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.input_size < 32:
            raise ConfigError(f"crop input size: expected at least 32 px; received {self.input_size}")
        if not 0.1 <= self.scale <= 8.0:
            raise ConfigError(f"scale: expected model pixels per frame pixel in [0.1, 8]; received {self.scale}")
        for name in ("positives_per_box", "negatives_per_frame", "hard_per_box"):
            non_negative_int(name, getattr(self, name))
        if not self.context or min(self.context) < 1.0:
            raise ConfigError(f"context: expected window multiples >= 1; received {self.context}")
        object.__setattr__(self, "context", tuple(float(c) for c in self.context))

    @property
    def window(self) -> float:
        """Side of the base window in native frame pixels."""
        return self.input_size / self.scale


@dataclass
class TileCounts:
    """What was cut, for the log and ``tiles.json``."""

    positive: int = 0
    negative: int = 0
    hard: int = 0
    context: int = 0
    mined: int = 0
    skipped_small: int = 0
    frames: int = 0
    box_widths: list = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        w = np.asarray(self.box_widths, np.float64)
        d["box_widths"] = {"n": int(w.size), **({} if not w.size else {
            "median": float(np.median(w)), "under_32": int((w < 32).sum()), "32_to_96": int(((w >= 32) & (w < 96)).sum()),
            "over_96": int((w >= 96).sum())})}
        return d


def _touches(win: np.ndarray, boxes: np.ndarray, margin: float) -> bool:
    """Whether window ``(x0, y0, x1, y1)`` overlaps any box grown by ``margin``."""
    if not len(boxes):
        return False
    b = boxes + np.array([-margin, -margin, margin, margin], np.float32)
    ix = np.minimum(win[2], b[:, 2]) - np.maximum(win[0], b[:, 0])
    iy = np.minimum(win[3], b[:, 3]) - np.maximum(win[1], b[:, 1])
    return bool(((ix > 0) & (iy > 0)).any())


def cut(image: np.ndarray, win: np.ndarray, size: int) -> np.ndarray | None:
    """The window ``(x0, y0, x1, y1)`` of ``image`` resized to ``size`` x ``size`` with the runtime's resize."""
    from edge.preprocess import shrink

    H, W = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in win)
    if x0 < 0 or y0 < 0 or x1 > W or y1 > H or x1 - x0 < 4 or y1 - y0 < 4:
        return None
    return shrink(np.ascontiguousarray(image[y0:y1, x0:x1]), size, size)


def _place(rng, lo: float, hi: float, side: float, limit: float) -> float | None:
    """A start in [lo, hi] for a window of ``side`` that stays inside [0, limit]."""
    lo, hi = max(lo, 0.0), min(hi, limit - side)
    if hi < lo:
        return None
    return float(rng.uniform(lo, hi))


def positive_windows(box: np.ndarray, frame_wh: tuple[int, int], opts: TileOptions, rng) -> list[np.ndarray]:
    """Jittered square windows that hold the whole box (grown when the vessel is larger than the base window).

    A vessel wider than the base window is also cut at the runtime's scale
    from inside its box: the runtime sees a ship of 600 px as hull and
    superstructure filling many cells, never shrunk into one crop, and with
    the best-cell score each of those cells must be able to say "vessel".
    """
    W, H = frame_wh
    bw, bh = box[2] - box[0], box[3] - box[1]
    out = []
    side = opts.window
    if bw >= 1.5 * side and bh >= 0.5 * side:
        for _ in range(opts.positives_per_box):
            cx, cy = rng.uniform(box[0] + side / 2, box[2] - side / 2), rng.uniform(box[1], box[3])
            x, y = min(max(cx - side / 2, 0), W - side), min(max(cy - side / 2, 0), H - side)
            if x >= 0 and y >= 0:
                out.append(np.array([x, y, x + side, y + side], np.float32))
    for _ in range(opts.positives_per_box):
        side = max(opts.window, max(bw, bh) * rng.uniform(1.15, 1.6))
        x = _place(rng, box[2] - side, box[0], side, W)
        y = _place(rng, box[3] - side, box[1], side, H)
        if x is not None and y is not None:
            out.append(np.array([x, y, x + side, y + side], np.float32))
    return out


def negative_windows(vessels: np.ndarray, others: np.ndarray, frame_wh: tuple[int, int], opts: TileOptions, rng,
                     ) -> list[tuple[str, np.ndarray]]:
    """(kind, window) pairs that touch no vessel: anywhere, wide context, and centred on other-class boxes."""
    W, H = frame_wh
    out = []
    for i in range(opts.negatives_per_frame):
        factor = opts.context[i % len(opts.context)]
        side = opts.window * factor
        if side > min(W, H):
            continue
        for _ in range(20):  # rejection sampling: most of a sea frame is free
            x, y = rng.uniform(0, W - side), rng.uniform(0, H - side)
            win = np.array([x, y, x + side, y + side], np.float32)
            if not _touches(win, vessels, opts.margin):
                out.append(("context" if factor > 1 else "negative", win))
                break
    # a harbour frame can hold dozens of parked cars: a sample of them is enough
    if len(others) > opts.max_hard_per_frame:
        others = others[rng.choice(len(others), opts.max_hard_per_frame, replace=False)]
    for box in others:
        for _ in range(opts.hard_per_box):
            side = max(opts.window, max(box[2] - box[0], box[3] - box[1]) * 1.3)
            cx = (box[0] + box[2]) / 2 + rng.uniform(-0.25, 0.25) * side
            cy = (box[1] + box[3]) / 2 + rng.uniform(-0.25, 0.25) * side
            x, y = min(max(cx - side / 2, 0), W - side), min(max(cy - side / 2, 0), H - side)
            win = np.array([x, y, x + side, y + side], np.float32)
            if x >= 0 and y >= 0 and not _touches(win, vessels, opts.margin):
                out.append(("hard", win))
    return out


def write_tiles(frames, positive: tuple[str, ...], out: str | Path, label: str, opts: TileOptions,
                split: str = "train") -> TileCounts:
    """Cut crops from ``frames`` (``edge.datasets.LabeledFrame``) into ``out/<label>`` and ``out/no_<label>``.

    Args:
        frames: the frames of one split (never mix training and validation frames).
        positive: the class names that count as a vessel.
        out: folder that receives one sub-folder per class.
        label: name of the positive class folder.
        opts: how to cut.
        split: used in file names and the log.

    Returns:
        The counts of crops per kind and the widths of the vessel boxes.
    """
    from edge.imageio import read_image

    rng = np.random.default_rng(opts.seed + (0 if split == "train" else 7919))
    pos_dir, neg_dir = Path(out) / label, Path(out) / f"no_{label}"
    pos_dir.mkdir(parents=True, exist_ok=True)
    neg_dir.mkdir(parents=True, exist_ok=True)
    counts = TileCounts()
    for fi, frame in enumerate(frames):
        image = read_image(frame.path)
        H, W = image.shape[:2]
        if (W, H) != (frame.width, frame.height):
            raise DataError(f"{frame.path}: labels say {frame.width}x{frame.height}; the image is {W}x{H}")
        vessels = frame.boxes_of(positive)
        others = np.asarray([b for b, c in zip(frame.boxes, frame.classes) if c not in positive], np.float32).reshape(-1, 4)
        counts.frames += 1
        stem = f"{split}{fi:05d}_{Path(frame.path).stem[:40]}"
        for bi, box in enumerate(vessels):
            bw, bh = box[2] - box[0], box[3] - box[1]
            counts.box_widths.append(float(bw))
            if max(bw, bh) < opts.min_box:
                counts.skipped_small += 1
                continue
            for ji, win in enumerate(positive_windows(box, (W, H), opts, rng)):
                crop = cut(image, win, opts.input_size)
                if crop is not None:
                    write_crop(pos_dir / f"{stem}_b{bi}_{ji}.jpg", crop)
                    counts.positive += 1
        for ni, (kind, win) in enumerate(negative_windows(vessels, others, (W, H), opts, rng)):
            crop = cut(image, win, opts.input_size)
            if crop is not None:
                write_crop(neg_dir / f"{stem}_{kind}{ni}.jpg", crop)
                setattr(counts, kind, getattr(counts, kind) + 1)
    log.info("%s crops from %d frames: %d positive, %d negative, %d wide context, %d hard (other classes); "
             "%d vessel boxes too small", split, counts.frames, counts.positive, counts.negative, counts.context,
             counts.hard, counts.skipped_small)
    return counts


def write_crop(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB crop as JPEG; DataError when it cannot be written."""
    import cv2

    # a quality high enough that JPEG blocks do not become a cue the runtime never sees
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise DataError(f"could not write crop {path}")


def cell_centres(shape_hw: tuple[int, int], frame_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Native-pixel (x, y) centres of the cells of an ``(h, w)`` feature grid over a stretched frame.

    The input size cancels out: a stretched frame maps its whole width onto the grid's.
    """
    h, w = shape_hw
    H, W = frame_hw
    return (np.arange(w) + 0.5) * W / w, (np.arange(h) + 0.5) * H / h


def mine_windows(cell_probs: np.ndarray, frame, positive: tuple[str, ...], opts: TileOptions, floor: float,
                 per_frame: int) -> list[np.ndarray]:
    """Windows centred on the cells that fire away from every vessel: the next round's hard negatives.

    Args:
        cell_probs: ``(h, w)`` per-cell probability of a round-one model over the whole frame.
        frame: the ``LabeledFrame`` it was computed on.
        floor: cells below this probability are not mined.
        per_frame: at most this many windows, strongest first, one per cell neighbourhood.
    """
    H, W = frame.height, frame.width
    vessels = frame.boxes_of(positive)
    xs, ys = cell_centres(cell_probs.shape, (H, W))
    order = np.argsort(-cell_probs, axis=None)
    taken: list[tuple[int, int]] = []
    out = []
    side = opts.window
    for flat in order:
        gy, gx = np.unravel_index(int(flat), cell_probs.shape)
        if cell_probs[gy, gx] < floor or len(out) >= per_frame:
            break
        if any(abs(gy - ty) <= 1 and abs(gx - tx) <= 1 for ty, tx in taken):
            continue
        x, y = min(max(xs[gx] - side / 2, 0), W - side), min(max(ys[gy] - side / 2, 0), H - side)
        win = np.array([x, y, x + side, y + side], np.float32)
        if _touches(win, vessels, opts.margin):
            continue
        taken.append((gy, gx))
        out.append(win)
    return out


def summary_line(counts: dict[str, TileCounts]) -> str:
    parts = []
    for split, c in counts.items():
        parts.append(f"{split}: {c.positive} positive / {c.negative + c.context + c.hard + c.mined} negative crops "
                     f"({c.hard} hard, {c.context} wide, {c.mined} mined) from {c.frames} frames")
    return "; ".join(parts)


__all__ = ["TileOptions", "TileCounts", "write_tiles", "mine_windows", "write_crop", "cut", "summary_line",
           "positive_windows", "negative_windows"]

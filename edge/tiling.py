"""Tiled inference: run a small-input classifier over a large frame, then stitch its CAMs.

A 224x224 MobileNetV2 sees a 1920x1080 frame shrunk 8x; a distant ship becomes
a few pixels. Tiling keeps native resolution at the cost of one inference per
tile (batched). Tiles overlap so a ship on a seam is whole in at least one tile,
and the boxes found on the stitched map are merged so it still counts once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from edge.boxes import boxes_from_heatmap, merge_boxes
from edge.errors import ConfigError, FrameError
from edge.results import FrameResult

__all__ = ["TileSpec", "TileDetector", "make_tiles", "stitch", "detect_tiled"]

Window = tuple[int, int, int, int]  # y0, x0, y1, x1 with y1/x1 exclusive


@dataclass(frozen=True)
class TileSpec:
    """How to cut a frame into tiles.

    Attributes:
        tile: tile size ``(h, w)`` in frame pixels, usually the model input size.
        overlap: fraction of a tile shared with its neighbour, in [0, 1).

    Example:
        >>> TileSpec(tile=(224, 224), overlap=0.25).stride
        (168, 168)
    """

    tile: tuple[int, int] = (224, 224)
    overlap: float = 0.25

    def __post_init__(self) -> None:
        tile = tuple(self.tile) if isinstance(self.tile, (tuple, list)) else ()
        if len(tile) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in tile):
            raise ConfigError(f"TileSpec.tile must be two positive ints (h, w); received {self.tile!r}")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, (int, float)) or not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"TileSpec.overlap must be a number in [0, 1); received {self.overlap!r}")
        object.__setattr__(self, "tile", (int(tile[0]), int(tile[1])))
        object.__setattr__(self, "overlap", float(self.overlap))

    @property
    def stride(self) -> tuple[int, int]:
        """Step between tile origins ``(sy, sx)``, at least one pixel."""
        return tuple(max(1, int(round(t * (1.0 - self.overlap)))) for t in self.tile)  # type: ignore[return-value]


class TileDetector(Protocol):
    """What :func:`detect_tiled` needs from a detector (edge.detector.Detector fits)."""

    labels: Sequence[str]

    def detect_batch(self, frames: list[np.ndarray]) -> list[FrameResult]: ...


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if tile >= length:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)  # the last tile sits flush with the border
    return starts


def make_tiles(frame_shape: Sequence[int], spec: TileSpec) -> list[Window]:
    """Windows ``(y0, x0, y1, x1)`` that cover a frame, row by row.

    Origins step by ``spec.stride``; the last row and column are moved back to
    end exactly at the border, so they overlap more rather than leaving a strip
    uncovered or padding the frame. A frame smaller than a tile gives one
    window clipped to the frame.

    Args:
        frame_shape: ``(H, W)`` or ``(H, W, C)``.
        spec: tile size and overlap.

    Raises:
        FrameError: the shape is not that of a non-empty image.

    Example:
        >>> make_tiles((100, 160), TileSpec(tile=(100, 100), overlap=0.5))
        [(0, 0, 100, 100), (0, 50, 100, 150), (0, 60, 100, 160)]
    """
    if len(frame_shape) not in (2, 3) or min(frame_shape[:2]) < 1:
        raise FrameError(f"expected a frame shape (H, W) or (H, W, C); received {tuple(frame_shape)}")
    h, w = int(frame_shape[0]), int(frame_shape[1])
    th, tw = min(spec.tile[0], h), min(spec.tile[1], w)
    sy, sx = spec.stride
    return [(y, x, y + th, x + tw) for y in _starts(h, th, sy) for x in _starts(w, tw, sx)]


def stitch(heatmaps: Sequence[np.ndarray], windows: Sequence[Window], frame_shape: Sequence[int]) -> np.ndarray:
    """Place tile heatmaps into one frame-size heatmap, taking the max where tiles overlap.

    Max (not mean) because a ship cut by one tile's border is weak there but
    strong in the tile that holds it whole; averaging would dim it at seams.

    Args:
        heatmaps: one ``(h, w)`` heatmap per window, at the window's size.
        windows: ``(y0, x0, y1, x1)`` per heatmap, inside the frame.
        frame_shape: ``(H, W)`` or ``(H, W, C)`` of the output.

    Returns:
        ``(H, W)`` float32 heatmap; pixels under no window are 0.

    Raises:
        FrameError: counts differ, or a heatmap does not match its window or frame.

    Example:
        >>> stitch([np.ones((2, 2)), np.full((2, 2), 0.5)], [(0, 0, 2, 2), (0, 1, 2, 3)], (2, 3)).tolist()
        [[1.0, 1.0, 0.5], [1.0, 1.0, 0.5]]
    """
    if len(heatmaps) != len(windows):
        raise FrameError(f"expected one heatmap per window; received {len(heatmaps)} heatmaps for {len(windows)} windows")
    h, w = int(frame_shape[0]), int(frame_shape[1])
    out = np.zeros((h, w), np.float32)
    for hm, (y0, x0, y1, x1) in zip(heatmaps, windows):
        hm = np.asarray(hm, np.float32)
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise FrameError(f"expected a window inside the {h}x{w} frame; received {(y0, x0, y1, x1)}")
        if hm.shape != (y1 - y0, x1 - x0):
            raise FrameError(f"expected a {(y1 - y0, x1 - x0)} heatmap for window {(y0, x0, y1, x1)}; received {hm.shape}")
        np.maximum(out[y0:y1, x0:x1], hm, out=out[y0:y1, x0:x1])
    return out


def box_level(detector, class_index: int = 0) -> float:
    """The heatmap level that makes a box for ``detector``: its own rule (``Detector.box_level``), else 0.5."""
    own = getattr(detector, "box_level", None)
    return float(own(class_index)) if callable(own) else 0.5


def _tile_results(detector: TileDetector, frame: np.ndarray, windows: list) -> list[FrameResult]:
    """One result per window, from one ``detect_batch`` call."""
    results = detector.detect_batch([frame[y0:y1, x0:x1] for y0, x0, y1, x1 in windows])
    if len(results) != len(windows):
        raise FrameError(f"expected {len(windows)} results from detect_batch; received {len(results)}")
    return results


def _summed_timings(results: list[FrameResult]) -> dict[str, float]:
    """Each stage's milliseconds summed over the tiles."""
    timings: dict[str, float] = {}
    for r in results:
        for stage, ms in r.timings_ms.items():
            timings[stage] = timings.get(stage, 0.0) + float(ms)
    return timings


def detect_tiled(
    detector: TileDetector,
    frame: np.ndarray,
    spec: TileSpec,
    threshold: float | None = None,
    min_area: int = 4,
    merge_gap: float = 2.0,
) -> FrameResult:
    """Classify a large frame tile by tile and return one frame-level result.

    Scores are the max over tiles and a label is positive if any tile says so.
    Every tile is gated by its own decision: a tile that is not positive
    contributes no heat, so one hot spot per tile (each normalised CAM has
    one) does not become a box. A detector whose heatmaps are absolute (a
    cell-pooled model, ``detector.absolute``) puts every tile on one scale,
    and its boxes are the regions above the decision threshold, the same rule
    as on a whole frame. Boxes are found on the stitched heatmap and then
    merged (touching boxes join), so a ship straddling a seam gives one box
    even when the two tiles' CAMs do not quite meet. Each tile's heatmap is
    the CAM of that tile's top class; boxes carry the frame's top class.

    Args:
        detector: anything with ``detect_batch`` and ``labels``.
        frame: RGB uint8 ``(H, W, 3)`` frame.
        spec: tile size and overlap.
        threshold: heatmap threshold for boxes, in (0, 1]; ``None`` takes the
            detector's own rule (its decision threshold for absolute heatmaps,
            else its ``options.box_threshold``, else 0.5).
        min_area: smallest box region in pixels.
        merge_gap: boxes this close (pixels) are joined. A CAM fades at a tile's
            border (zero padding in the convolutions), so a ship cut by a seam
            of non-overlapping tiles shows a gap of about a pixel on each side.

    Returns:
        FrameResult at frame size; ``timings_ms`` sums each stage over tiles
        and adds ``stitch`` and ``tiled_total``.

    Raises:
        FrameError: the frame is not RGB uint8, or the detector returned the wrong number of results.

    Long because: the docstring explains the gating and seam rules; the body is about twenty lines.

    Example:
        >>> result = detect_tiled(detector, frame, TileSpec((224, 224)))  # doctest: +SKIP
    """
    start = time.monotonic()
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
        raise FrameError(f"expected an RGB uint8 (H, W, 3) frame; received {frame.dtype} {frame.shape}")
    windows = make_tiles(frame.shape, spec)
    results = _tile_results(detector, frame, windows)

    t_stitch = time.monotonic()
    heatmap = stitch([r.heatmap if np.any(r.positive) else np.zeros(r.heatmap.shape[:2], np.float32) for r in results],
                     windows, frame.shape)
    scores = np.max([r.scores for r in results], axis=0)
    positive = np.any([r.positive for r in results], axis=0)
    top = int(np.argmax(scores))
    if threshold is None:
        threshold = box_level(detector, top)
    boxes = merge_boxes(boxes_from_heatmap(heatmap, threshold, min_area, class_id=top), gap=merge_gap)
    end = time.monotonic()
    timings = _summed_timings(results)
    timings["stitch"] = (end - t_stitch) * 1000.0
    timings["tiled_total"] = (end - start) * 1000.0
    labels = tuple(getattr(detector, "labels", None) or results[0].labels)
    return FrameResult(scores, labels, positive, heatmap, boxes, timings)

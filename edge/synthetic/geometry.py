"""Raster and geometry helpers shared by the sea, the ships and the clip.

Value noise, jittered palette picks, ship-local affine maps, and polygons clipped to the image
and filled at 1/16 px.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

_FOAM = 238.0  # the white of surf, whitecaps and wakes


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.flags.writeable = xx.flags.writeable = False  # cached and shared: nobody may write into it
    return yy, xx


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    # value noise: a coarse normal grid upsampled by OpenCV is ~100x faster than per-pixel octaves
    gh, gw = -(-h // cell) + 1, -(-w // cell) + 1
    coarse = rng.standard_normal((gh, gw), dtype=np.float32)
    if cell <= 8 or cell % 4:
        return cv2.resize(coarse, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)[:h, :w]
    # big cells: cubic to a 4 px lattice, crop, then linear; the full cubic upsample costs 10x more
    mid = cv2.resize(coarse, (gw * cell // 4, gh * cell // 4), interpolation=cv2.INTER_CUBIC)
    mid = mid[: -(-h // 4) + 2, : -(-w // 4) + 2]
    return cv2.resize(mid, (mid.shape[1] * 4, mid.shape[0] * 4), interpolation=cv2.INTER_LINEAR)[:h, :w]


def _fractal(rng: np.random.Generator, h: int, w: int, cells: tuple[int, ...], gain: float = 0.5) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    for i, cell in enumerate(cells):
        out += gain**i * _noise(rng, h, w, cell)
    return out / (out.std() + 1e-6)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _pick(rng: np.random.Generator, palette: tuple, spread: float = 0.1) -> np.ndarray:
    colour = np.asarray(palette[rng.integers(len(palette))], np.float32)
    return np.clip(colour * rng.uniform(1 - spread, 1 + spread) + rng.normal(0, 5, 3), 0, 255).astype(np.float32)


def _affine(centre: np.ndarray, heading: float) -> np.ndarray:
    """2x3 map from ship-local coordinates (bow toward +x) to image coordinates."""
    c, s = math.cos(heading), math.sin(heading)
    return np.array([[c, -s, centre[0]], [s, c, centre[1]]], np.float64)


def _apply(a: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ a[:, :2].T + a[:, 2]


def _fixed(pts: np.ndarray) -> np.ndarray:
    # 4 fractional bits: OpenCV rasterises sub-pixel vertices, so ships move smoothly in the clip
    return np.round(np.asarray(pts) * 16).astype(np.int32).reshape(-1, 1, 2)


def _area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0]))


def _clip(poly: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """``poly`` clipped to the box [x0, x1] x [y0, y1] (Sutherland-Hodgman; exact for convex shapes)."""
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    if lo[0] >= x0 and lo[1] >= y0 and hi[0] <= x1 and hi[1] <= y1:
        return poly
    pts = [tuple(p) for p in poly]
    for axis, bound, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        out = []
        for i, q in enumerate(pts):
            p = pts[i - 1]
            p_in = p[axis] <= bound if keep_below else p[axis] >= bound
            q_in = q[axis] <= bound if keep_below else q[axis] >= bound
            if p_in != q_in:
                f = (bound - p[axis]) / (q[axis] - p[axis])
                out.append((p[0] + f * (q[0] - p[0]), p[1] + f * (q[1] - p[1])))
            if q_in:
                out.append(q)
        pts = out
        if not pts:
            return np.zeros((0, 2))
    return np.asarray(pts)


def _clipped_area(poly: np.ndarray, w: float, h: float) -> float:
    return _area(_clip(poly, 0.0, 0.0, w, h))


def _fill(img: np.ndarray, poly: np.ndarray, value, line_type: int = cv2.LINE_8) -> None:
    """``cv2.fillPoly`` of a float polygon, clipped to the image first.

    OpenCV smears a polygon that leaves the image sideways into the border column (seen with
    OpenCV 5.0): a clipped polygon draws only pixels that belong to it, and boxes stay exact.
    """
    h, w = img.shape[:2]
    poly = _clip(poly, -0.5, -0.5, w - 0.5, h - 0.5)  # pixel centres are integers
    if len(poly) >= 3:
        cv2.fillPoly(img, [_fixed(poly)], value, line_type, 4)

"""Seeded synthetic sea scenes: ships, and the things on the sea that are not ships.

What it models: the sea seen from above (a drone, or a camera high on a mast). Water has swell,
short waves, sun glint, whitecaps and soft cloud shadows. Some scenes hold a coastline (land, a
beach and surf entering from a border) and rocks, some with white surf. Ships are rotated polygons
seen from above: a pointed bow, a deck inside a coloured hull rim, a superstructure toward the
stern, cargo on some, a faint shadow and, when under way, a fading V of white wake.

Why: the classifier trained on these stills explains itself with a Class Activation Map whose peak
must fall on the ship. If a ship were the only bright or structured thing on the water the model
would learn "bright thing on water". So coast, rocks with surf, whitecaps, glint and the wake of a
ship just outside the picture appear in both classes at the same rate, anchored ships have no wake,
and the hull and its superstructure are the only thing that tells the classes apart.

Every size is in pixels and independent of the image size, so a ship of length L px looks the same
in a 160x160 still and in a 640x360 clip. All randomness flows from ``np.random.default_rng`` seeds:
the same seed gives byte-identical images, PNG files and frames. Images are RGB uint8 (H, W, 3);
BGR appears only at OpenCV file I/O.

Example:
    >>> import numpy as np
    >>> image, boxes = render_scene(np.random.default_rng(0), SceneSpec(), n_ships=1)
    >>> image.shape, image.dtype, boxes.shape
    ((160, 160, 3), dtype('uint8'), (1, 4))
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Mapping

import cv2
import numpy as np

from edge.atomic import write_text
from edge.errors import ConfigError, DataError

__all__ = ["LABELS", "DatasetInfo", "SceneClip", "SceneSpec", "SpecError", "generate_dataset", "render_scene"]

LABELS = ("no_ship", "ship")
_SPLITS = ("train", "val")
_SEED_MAX = 2**63 - 1
_FOAM = 238.0
# RGB palettes; every pick is jittered so no class is keyed to an exact colour.
_WATER = ((16, 48, 84), (20, 66, 88), (26, 74, 80), (46, 70, 76), (12, 32, 56), (30, 88, 102), (36, 58, 68))
_SHALLOW = ((54, 128, 130), (70, 120, 110), (60, 110, 120))
_HULL = ((58, 60, 64), (226, 226, 220), (150, 32, 28), (26, 36, 72), (24, 24, 26), (214, 98, 30),
         (36, 84, 52), (44, 82, 150), (204, 170, 44), (104, 58, 34))
_DECK = ((118, 118, 114), (64, 88, 62), (124, 58, 44), (168, 128, 84), (184, 184, 178), (88, 104, 128))
_SUPER = ((238, 238, 232), (226, 216, 192), (204, 206, 206), (240, 236, 220), (214, 110, 40))
_CARGO = ((170, 50, 40), (40, 80, 140), (200, 160, 50), (60, 110, 70), (150, 150, 150), (190, 90, 40), (230, 230, 225))
_LAND = (((196, 178, 132), (180, 160, 112)), ((74, 98, 52), (46, 70, 38)), ((122, 120, 114), (96, 96, 92)),
         ((120, 96, 68), (96, 104, 60)))
_BEACH = ((206, 190, 146), (150, 146, 136))
_ROCK = ((96, 94, 90), (120, 112, 100), (78, 70, 62), (110, 96, 80), (140, 136, 128), (64, 62, 60))


class SpecError(ConfigError, ValueError):
    """A generator option is out of range: both an edgecam ``ConfigError`` and a ``ValueError``."""


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise SpecError(f"{name}: expected an int in [{lo}, {hi}], received {value!r}")


def _check_float(name: str, value: object, lo: float, hi: float, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not (lo < value <= hi if low_open else lo <= value <= hi):  # NaN fails both comparisons
        raise SpecError(f"{name}: expected a number in {'(' if low_open else '['}{lo}, {hi}], received {value!r}")


def _check_pair(name: str, value: object, lo: float, hi: float, why: str = "") -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        a = b = math.nan
    if not lo <= a <= b <= hi:
        raise SpecError(f"{name}: expected (min, max) with {lo} <= min <= max <= {hi}{why}, received {value!r}")
    return a, b


@dataclass(frozen=True)
class SceneSpec:
    """Options of a still scene. Sizes are pixels, the same scale as :class:`SceneClip`.

    Attributes:
        height: image height in px.
        width: image width in px.
        ship_length: (min, max) ship length; max <= min(height, width) so a ship fits at any heading.
        max_ships: most ships in one ``ship`` image of :func:`generate_dataset`.
        hard_negative_rate: share of scenes, in both classes, with coast, rocks or a stray wake.
        beam_ratio: (min, max) beam as a fraction of length.
        min_inside: smallest share of a ship's hull area inside the image.
        wakes: draw wakes. Turning wakes or shadows off changes no other pixel (tests rely on it).
        shadows: draw ship shadows.

    Example:
        >>> SceneSpec(height=96, width=128, ship_length=(20.0, 60.0)).max_ships
        3
    """

    height: int = 160
    width: int = 160
    ship_length: tuple[float, float] = (40.0, 120.0)
    max_ships: int = 3
    hard_negative_rate: float = 0.4
    beam_ratio: tuple[float, float] = (0.18, 0.32)
    min_inside: float = 0.7
    wakes: bool = True
    shadows: bool = True

    def __post_init__(self) -> None:
        _check_int("height", self.height, 32, 4096)
        _check_int("width", self.width, 32, 4096)
        fit = min(self.height, self.width)
        length = _check_pair("ship_length", self.ship_length, 8.0, float(fit), " (= min(height, width))")
        object.__setattr__(self, "ship_length", length)
        object.__setattr__(self, "beam_ratio", _check_pair("beam_ratio", self.beam_ratio, 0.05, 0.6))
        _check_int("max_ships", self.max_ships, 1, 20)
        _check_float("hard_negative_rate", self.hard_negative_rate, 0.0, 1.0)
        _check_float("min_inside", self.min_inside, 0.0, 1.0, low_open=True)
        for name in ("wakes", "shadows"):
            if not isinstance(getattr(self, name), bool):
                raise SpecError(f"{name}: expected a bool, received {getattr(self, name)!r}")


# ----------------------------------------------------------------------------- small geometry helpers
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


# ----------------------------------------------------------------------------- ships
@dataclass(frozen=True)
class _Ship:
    length: float
    beam: float
    parts: tuple[tuple[np.ndarray, tuple[float, float, float]], ...]  # local polygons, drawn in order; [0] is the hull
    samples: np.ndarray  # local points inside the hull, for cheap overlap tests
    area: float  # hull polygon area, px2
    wake: float  # wake length in px; 0 when anchored
    wake_angle: float
    wake_strength: float


def _rect(x0: float, x1: float, half: float) -> np.ndarray:
    return np.array([[x0, -half], [x1, -half], [x1, half], [x0, half]], np.float64)


def _make_ship(rng: np.random.Generator, lengths: tuple[float, float], beams: tuple[float, float],
               moving: float = 0.75) -> _Ship:
    length = rng.uniform(*lengths)
    beam = length * rng.uniform(*beams)
    hl, hb, bow = length / 2, beam / 2, length * rng.uniform(0.2, 0.32)
    s = np.linspace(0, 1, 7)[1:-1]
    # a parabolic taper from full beam to a point: convex, reads as a bow even at 40 px
    side = [(-hl, -0.8 * hb), (-hl + 0.04 * length, -hb), (hl - bow, -hb), *zip(hl - bow + bow * s, -hb * (1 - s**2))]
    right = np.asarray(side + [(hl, 0.0)])
    hull = np.concatenate([right, right[-2::-1] * [1, -1]])
    hull_rgb = _pick(rng, _HULL)
    deck_rgb = _pick(rng, _DECK) if rng.random() < 0.7 else np.clip(hull_rgb * rng.uniform(0.7, 1.3), 0, 255)
    parts = [(hull, hull_rgb), (hull * [0.93, rng.uniform(0.62, 0.8)], deck_rgb)]
    x0 = -hl + 0.06 * length
    x1 = x0 + length * rng.uniform(0.12, 0.3)
    sup_half = hb * rng.uniform(0.5, 0.6)
    if rng.random() < 0.4 and length > 55:  # container rows between superstructure and bow
        x, end = x1 + 0.03 * length, hl - 1.1 * bow
        step = length * rng.uniform(0.07, 0.11)
        while x + step * 0.8 < end:
            parts.append((_rect(x, x + step * 0.85, sup_half * rng.uniform(0.9, 1.1)), _pick(rng, _CARGO, 0.15)))
            x += step
    parts.append((_rect(x0, x1, sup_half), _pick(rng, _SUPER, 0.06)))
    bridge = max(1.2, 0.025 * length)  # dark window band at the front of the superstructure
    parts.append((_rect(x1 - bridge, x1, sup_half), np.clip(_pick(rng, _HULL) * 0.35, 0, 255)))
    gx, gy = np.meshgrid(np.linspace(-0.48, 0.48, 9) * length, np.array([-0.42, 0.0, 0.42]) * beam)
    taper = np.clip((hl - gx) / bow, 0, 1)
    inside = np.abs(gy) <= hb * (1 - (1 - taper) ** 2) + 1e-9
    samples = np.stack([gx[inside], gy[inside]], axis=1)
    wake = length * rng.uniform(1.2, 2.4) if rng.random() < moving else 0.0
    return _Ship(length, beam, tuple((p, tuple(map(float, c))) for p, c in parts), samples, _area(hull), wake,
                 rng.uniform(0.25, 0.4), rng.uniform(0.55, 0.9))


def _draw_wake(mask: np.ndarray, ship: _Ship, a: np.ndarray) -> None:
    if ship.wake <= 0:
        return
    back, side = -a[:, 0], a[:, 1]
    stern, bow = _apply(a, np.array([[-ship.length / 2, 0.0], [ship.length / 2, 0.0]]))
    f = np.arange(9) / 8.0  # 8 segments per stroke, so each can fade and widen on its own
    starts, ends, values, widths = [], [], [], []

    def stroke(origin: np.ndarray, d: np.ndarray, length: float, value: np.ndarray, width: np.ndarray) -> None:
        pts = origin + np.outer(f * length, d)
        starts.append(pts[:-1]), ends.append(pts[1:]), values.append(value), widths.append(width)

    level, beam, k = 255.0 * ship.wake_strength, ship.beam, f[:-1]
    for arm in (1.0, -1.0):  # Kelvin arms from the stern corners, widening and fading with distance
        c, s = math.cos(arm * ship.wake_angle), math.sin(arm * ship.wake_angle)
        d = np.array([c * back[0] - s * back[1], s * back[0] + c * back[1]])
        stroke(stern + side * arm * beam * 0.45, d, ship.wake, level * 0.8 * (1 - k) ** 1.6, beam * (0.12 + 0.3 * k))
        c, s = math.cos(arm * 0.6), math.sin(arm * 0.6)  # bow wave
        d = np.array([c * back[0] - s * back[1], s * back[0] + c * back[1]])
        stroke(bow, d, 0.3 * ship.length, np.full(8, level * 0.5), np.full(8, beam * 0.12))
    # turbulent propeller wash right behind the stern, drawn last so it wins where strokes overlap
    stroke(stern, back, 0.6 * ship.wake, level * (1 - k) ** 1.3, beam * (0.5 + 0.9 * k))
    p, q = _fixed(np.concatenate(starts))[:, 0], _fixed(np.concatenate(ends))[:, 0]
    thick = np.maximum(1, np.round(np.concatenate(widths))).astype(int).tolist()
    for p0, q0, v, t in zip(p.tolist(), q.tolist(), np.concatenate(values).tolist(), thick):
        cv2.line(mask, p0, q0, v, t, cv2.LINE_AA, 4)


def _grow(rect: tuple[int, int, int, int], by: int, w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0 = max(0, rect[0] - by), max(0, rect[1] - by)
    return x0, y0, min(w, rect[0] + rect[2] + by) - x0, min(h, rect[1] + rect[3] + by) - y0


def _draw_ships(img: np.ndarray, placed: list, strays: list, water: np.ndarray | None, sun: np.ndarray,
                spec: SceneSpec, turb: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Draw wakes, shadows and hulls of ``placed`` (ship, affine) into float ``img`` in place.

    Returns boxes (N, 4) of the drawn hull pixels of the ships with any pixel in the image, and the
    visible share of each such hull.
    """
    h, w = img.shape[:2]
    if spec.wakes and any(ship.wake > 0 for ship, _ in (*placed, *strays)):
        mask = np.zeros((h, w), np.uint8)
        for ship, a in (*strays, *placed):
            _draw_wake(mask, ship, a)
        x, y, bw, bh = _grow(cv2.boundingRect(mask), 3, w, h)  # float work only where the wakes are
        roi = np.s_[y : y + bh, x : x + bw]
        foam = cv2.GaussianBlur(mask[roi], (5, 5), 0).astype(np.float32) * (1 / 255.0)
        foam *= turb[roi] if turb is not None else 1.0
        foam *= water[roi] if water is not None else 1.0  # no wake over land or rocks
        img[roi] += (_FOAM - img[roi]) * foam[..., None]
    if spec.shadows and placed:
        mask = np.zeros((h, w), np.uint8)
        for ship, a in placed:
            _fill(mask, _apply(a, ship.parts[0][0]) + sun * (0.035 * ship.length + 1.5), 255)
        x, y, bw, bh = _grow(cv2.boundingRect(mask), 3, w, h)
        roi = np.s_[y : y + bh, x : x + bw]
        img[roi] *= (1.0 - cv2.GaussianBlur(mask[roi], (5, 5), 0).astype(np.float32) * (0.45 / 255.0))[..., None]
    boxes, visible = [], []
    for ship, a in placed:
        mask = np.zeros((h, w), np.uint8)
        for poly, colour in ship.parts:
            pts = _apply(a, poly)
            _fill(img, pts, colour)
            _fill(mask, pts, 1)  # the same fill on a mask: the box is exactly the drawn pixels
        x, y, bw, bh = cv2.boundingRect(mask)
        if bw:
            boxes.append((x, y, x + bw, y + bh))
            visible.append(min(1.0, cv2.countNonZero(mask) / max(1.0, ship.area)))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(visible, np.float32)


# ----------------------------------------------------------------------------- the sea without ships
class _World:
    """Water, weather and hard negatives over an (h, w) canvas; :meth:`compose` renders time ``t``."""

    def __init__(self, rng: np.random.Generator, h: int, w: int, spec: SceneSpec, cap_sets: int = 1,
                 strays: bool = True) -> None:
        self.h, self.w = h, w
        yy, xx = _grid(h, w)
        # one fine-grain field serves foam, rock, land and wake texture: they rarely overlap, and
        # each small-cell fractal costs as much as the rest of the scene
        self.fine = _fractal(rng, h, w, (6, 3))
        mix = 0.4 * _smoothstep(0.5 + 0.35 * _fractal(rng, h, w, (96, 48)))[..., None]
        base = (_pick(rng, _WATER, 0.12) * (1 - mix) + _pick(rng, _WATER, 0.12) * mix)
        base *= (1.0 + 0.1 * _fractal(rng, h, w, (64, 32, 16)))[..., None]
        wind = rng.uniform(0, 2 * math.pi)
        distort = 2.0 * _fractal(rng, h, w, (48, 24))
        envelope = np.clip(0.9 + 0.7 * _fractal(rng, h, w, (32, 16)), 0.0, 2.0)  # patchy, not a zebra
        amp = rng.uniform(0.03, 0.09)
        self._waves = []  # sin(phase - wt) = S cos(wt) - C sin(wt): two products per frame instead of a sin
        for j, (lam, a) in enumerate((((6, 16), amp), ((4, 9), amp * rng.uniform(0.3, 0.7)))):
            angle = wind + (0.0 if j == 0 else rng.uniform(0.5, 1.4) * rng.choice([-1, 1]))
            k = 2 * math.pi / rng.uniform(*lam)
            phase = k * (xx * math.cos(angle) + yy * math.sin(angle)) + distort * (1 + j)
            self._waves.append((np.sin(phase) * envelope, np.cos(phase) * envelope, k * rng.uniform(4, 10), a))
        density = (0.0, 0.15, 0.45)[rng.choice(3, p=[0.35, 0.45, 0.2])]  # whitecaps per 1000 px2
        self._caps = [self._whitecaps(rng, density, wind + math.pi / 2) for _ in range(cap_sets)]
        self._glint = None
        if rng.random() < 0.55:
            gx, gy = rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.2, 1.2) * h
            sx = rng.uniform(30, 110)
            sy = sx * rng.uniform(0.5, 1.5)
            region = np.exp(-0.5 * (((xx - gx) / sx) ** 2 + ((yy - gy) / sy) ** 2)) * rng.uniform(0.5, 1.0)
            self._glint = (region.astype(np.float32), rng.uniform(0.04, 0.18))  # (strength, sparkle density)
        shade = np.ones((h, w), np.float32)
        if rng.random() < 0.45:
            cloud = _fractal(rng, h, w, (192, 96, 48))
            shade -= rng.uniform(0.2, 0.45) * _smoothstep(cloud - rng.uniform(-0.3, 0.8))
        self.sun = np.array([math.cos(a := rng.uniform(0, 2 * math.pi)), math.sin(a)])
        self.look = (rng.uniform(0.9, 1.12), _pick(rng, ((200, 205, 210), (180, 190, 200))), rng.uniform(0, 0.15),
                     rng.uniform(1.5, 4.0))
        over_pm = np.zeros((h, w, 3), np.float32)  # premultiplied land/rock/surf colour
        over_a = np.zeros((h, w), np.float32)
        self.strays: list = []
        if rng.random() < spec.hard_negative_rate:
            coast, rocks = rng.random() < 0.55, rng.random() < 0.65
            depth = None
            if coast:
                depth, base = self._coast(rng, xx, yy, base, over_pm, over_a)
            if rocks or not coast:
                self._rocks(rng, depth, over_pm, over_a)
            if strays and rng.random() < 0.3:
                self._stray(rng, spec)
        if self._glint is not None:  # no glint in cloud shadow or over land; store (sheen, sparkle chance)
            region = self._glint[0] * shade**4 * (1 - over_a)
            self._glint = (35.0 * region, self._glint[1] * region)
        self.water = (1.0 - over_a).astype(np.float32)
        self.occupied = (over_a > 0.2).astype(np.uint8)
        self._shade = (self.water * shade)[..., None]
        self._base = base * self._shade
        self._over = over_pm * shade[..., None]

    def _whitecaps(self, rng: np.random.Generator, density: float, along: float) -> np.ndarray | None:
        n = rng.poisson(density * self.h * self.w / 1000)
        if n == 0:
            return None
        mask = np.zeros((self.h, self.w), np.uint8)
        for x, y, size, tilt, value in zip(rng.uniform(0, self.w, n), rng.uniform(0, self.h, n), rng.uniform(1.5, 6, n),
                                           rng.normal(0, 0.3, n), rng.uniform(110, 255, n)):
            # a cap is a few overlapping blobs along the crest: broken streaks, not rice grains
            d = np.array([math.cos(along + tilt), math.sin(along + tilt)])
            for k in range(int(rng.integers(1, 4))):
                c = np.array([x, y]) + d * rng.normal(0, size) + rng.normal(0, 0.8, 2)
                axes = (int(16 * size * rng.uniform(0.3, 0.8)), int(16 * rng.uniform(0.4, 1.2)))
                cv2.ellipse(mask, (int(c[0] * 16), int(c[1] * 16)), axes, math.degrees(along + tilt),
                            0, 360, float(value * rng.uniform(0.5, 1.0)), -1, cv2.LINE_AA, 4)
        caps = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32) * (1 / 255.0)
        return caps * np.clip(0.6 + 0.5 * self.fine, 0, 1)

    def _coast(self, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, base: np.ndarray,
               over_pm: np.ndarray, over_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add land, beach and surf from a random side; return (signed px distance to shore, tinted water)."""
        h, w = self.h, self.w
        ang = rng.uniform(0, 2 * math.pi)
        s = xx * math.cos(ang) + yy * math.sin(ang)  # distance toward the land side
        along = yy * math.cos(ang) - xx * math.sin(ang)
        lo = float(along.min())
        span = int(math.ceil(float(along.max()) - lo)) + 2
        wobble = np.zeros(span, np.float32)  # shoreline offset per px along the coast
        for spacing, amp in ((48, rng.uniform(5, 14)), (10, rng.uniform(1, 3))):
            knots = span // spacing + 4
            prof = cv2.resize(rng.standard_normal((1, knots)).astype(np.float32), (knots * spacing, 1),
                              interpolation=cv2.INTER_CUBIC)[0]
            wobble += amp * prof[:span]
        # a 1 px table lookup instead of np.interp (1 ms per still); float() keeps float32 (NEP 50)
        depth = s - float(np.quantile(s[::4, ::4], 1 - rng.uniform(0.12, 0.35)))
        depth += wobble[np.round(along - lo).astype(np.intp)]  # > 0 on land, px
        kind = int(rng.integers(len(_LAND)))
        c1, c2 = (np.clip(np.asarray(c, np.float32) * rng.uniform(0.9, 1.1), 0, 255) for c in _LAND[kind])
        patches = _smoothstep(0.5 + _fractal(rng, h, w, (48, 24, 12)))
        texture = 1 + 0.08 * (_noise(rng, h, w, 12) + self.fine)
        beach_w = rng.uniform(3, 10)
        on_beach = _smoothstep((beach_w - depth) / 2.0)
        # per-pixel weights stay single-channel; only the final mix touches three channels
        wet = on_beach * (0.78 + 0.22 * _smoothstep(depth / beach_w))
        alpha = np.clip(depth + 0.5, 0, 1)
        kept = (1 - on_beach) * texture * alpha
        land = (kept * (1 - patches))[..., None] * c1 + (kept * patches)[..., None] * c2
        land += (wet * alpha)[..., None] * _pick(rng, _BEACH, 0.08)
        surf = np.where(depth < 0.5, np.exp(np.minimum(depth, 0) / rng.uniform(2.5, 7)), 0)
        surf *= np.clip(0.45 + 0.5 * self.fine, 0, 1) * rng.uniform(0.6, 0.95) * (1 - alpha)
        over_pm += land + _FOAM * surf[..., None]
        over_a += alpha + surf
        shallow = (np.exp(np.minimum(depth, 0) / rng.uniform(10, 30)) * rng.uniform(0.3, 0.7))[..., None]
        return depth, base + (_pick(rng, _SHALLOW, 0.1) - base) * shallow

    def _rocks(self, rng: np.random.Generator, depth: np.ndarray | None, over_pm: np.ndarray,
               over_a: np.ndarray) -> None:
        """Add 1-5 rocks or small clusters, half with white surf; many hug the coast when there is one."""
        h, w = self.h, self.w
        foam = np.zeros((h, w), np.uint8)
        body = np.zeros((h, w), np.uint8)
        rgb = np.zeros((h, w, 3), np.float32)
        near = np.argwhere((depth > -35) & (depth < -4)) if depth is not None else np.zeros((0, 2))
        for _ in range(int(rng.integers(1, 6))):
            if len(near) and rng.random() < 0.6:  # rocks like to sit off a coast
                centre = near[rng.integers(len(near))][::-1].astype(np.float64)
            else:
                centre = rng.uniform((0, 0), (w, h))
            for j in range(1 + int(rng.random() < 0.4) * int(rng.integers(1, 4))):
                size = rng.uniform(3, 15) * (0.6 if j else 1.0)
                c = centre + (rng.normal(0, 9, 2) if j else 0)
                n = int(rng.integers(7, 12))
                angles = (np.arange(n) + rng.uniform(-0.35, 0.35, n)) * (2 * math.pi / n)
                local = np.stack([np.cos(angles), np.sin(angles)], 1) * rng.uniform(0.6, 1.2, (n, 1)) * size
                poly = _apply(_affine(c, rng.uniform(0, math.pi)), local * [rng.uniform(1, 2.2), 1])
                if rng.random() < 0.55:
                    grow = (poly - c) * rng.uniform(1.3, 1.7) + c
                    _fill(foam, grow, int(rng.uniform(140, 230)), cv2.LINE_AA)
                colour = _pick(rng, _ROCK, 0.12)
                _fill(rgb, poly, tuple(map(float, colour)))
                _fill(body, poly, 1)
                lit = (poly - c) * 0.6 + c + self.sun * size * -0.2  # lit face toward the sun reads as relief
                _fill(rgb, lit, tuple(map(float, np.clip(colour * 1.25, 0, 255))))
        f = cv2.GaussianBlur(foam, (5, 5), 0).astype(np.float32) / 255 * np.clip(0.5 + 0.5 * self.fine, 0, 1)
        r = body.astype(np.float32)
        rgb *= (1 - 0.15 * self.fine)[..., None]
        for colour_pm, alpha in ((_FOAM * f[..., None], f), (rgb * r[..., None], r)):  # surf under the rock
            over_pm *= (1 - alpha)[..., None]
            over_pm += colour_pm
            over_a *= 1 - alpha
            over_a += alpha

    def _stray(self, rng: np.random.Generator, spec: SceneSpec) -> None:
        # the wake of a ship just outside the picture: white V, no hull, label no_ship
        ship = _make_ship(rng, spec.ship_length, spec.beam_ratio, moving=1.0)
        phi = rng.uniform(0, 2 * math.pi)
        out = np.array([math.cos(phi), math.sin(phi)])
        centre = np.array([self.w, self.h]) / 2
        centre = centre + out * min(abs(centre[0] / (out[0] or 1e-9)), abs(centre[1] / (out[1] or 1e-9)))
        heading = phi + rng.uniform(-0.8, 0.8)
        a = _affine(centre, heading)
        while _clipped_area(_apply(a, ship.parts[0][0]), self.w, self.h) > 0:
            a[:, 2] += out * 4
        self.strays.append((ship, a))

    def compose(self, t: float, rng: np.random.Generator) -> np.ndarray:
        """Float RGB (h, w, 3) at time ``t``; ``rng`` draws this frame's glint sparkle."""
        unit = gain = None
        for s, c, omega, amp in self._waves:  # OpenCV's fused a*x + b*y is 3x faster than numpy here
            comp = cv2.addWeighted(s, math.cos(omega * t), c, -math.sin(omega * t), 0.0)
            unit = comp if unit is None else unit
            gain = cv2.addWeighted(comp, amp, comp, 0.0, 1.0) if gain is None else cv2.scaleAdd(comp, amp, gain)
        extra = np.zeros_like(gain)
        for j, layer in enumerate(self._caps):
            if layer is not None:  # three staggered sets fade in and out: whitecaps live a few seconds
                weight = 1.0 if len(self._caps) == 1 else 0.5 + 0.5 * math.cos(0.8 * t + 2 * math.pi * j / 3)
                extra = cv2.scaleAdd(layer, weight, extra)
        gain *= 1.0 - extra
        extra *= _FOAM
        if self._glint is not None:
            region, chance = self._glint
            sparkle = (unit > 0.55) & (rng.random((self.h, self.w), dtype=np.float32) < chance)
            extra += region * (1.0 + unit)
            extra += sparkle * np.float32(230.0)
        extra *= self._shade[..., 0]
        out = self._base * gain[..., None]
        out += extra[..., None]
        out += self._over
        return out


def _finish(img: np.ndarray, rng: np.random.Generator, look: tuple) -> np.ndarray:
    gain, haze, amount, sigma = look
    # uniform grain with the same std: a quarter of the cost of normal draws, same look at 2-4 levels
    grain = rng.random(img.shape[:2], dtype=np.float32)
    grain -= 0.5
    grain *= sigma * math.sqrt(12.0)
    img *= gain * (1 - amount)
    img += haze * amount
    img += grain[..., None]
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def _turbulence(fine: np.ndarray) -> np.ndarray:
    return np.clip(0.6 + 0.35 * fine, 0.1, 1.0)


# ----------------------------------------------------------------------------- stills
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
    plan = []
    for split_index, (split, n) in enumerate(zip(_SPLITS, (n_train, n_val))):
        positive = np.zeros(n, bool)
        positive[np.random.default_rng([seed, 1, split_index]).permutation(n)[: int(n * ship_fraction + 0.5)]] = True
        plan += [(split_index, split, i, bool(p), f"{split}/{LABELS[int(p)]}/{i:05d}.png") for i, p in enumerate(positive)]
    planned = {root / rel for *_, rel in plan}
    stale = sorted(p for split in _SPLITS for label in LABELS for p in (root / split / label).glob("*.png") if p not in planned)
    if stale:  # a folder-per-class loader would silently mix them in
        raise DataError(f"{root}: expected no class images other than the {len(planned)} this run writes, "
                        f"received {len(stale)} more (e.g. {stale[0]}); use an empty folder")
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
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["split", "path", "label", "x0", "y0", "x1", "y1"])
    writer.writerows(rows)
    labels_csv = write_text(root / "labels.csv", text.getvalue())
    return DatasetInfo(root, labels_csv, counts, {k: tuple(v) for k, v in images.items()},
                       sum(1 for r in rows if r[3] != ""))


# ----------------------------------------------------------------------------- clip
@dataclass(frozen=True)
class _Pass:
    """One ship crossing the frame on a straight line, in world pixels and seconds."""

    ship: _Ship
    origin: np.ndarray  # centre at time t0, just outside the (jitter-widened) frame
    heading: float
    speed: float
    t0: float  # enters
    t1: float  # hull has left
    t_end: float  # wake has left too
    yaw: tuple[float, float, float]  # amplitude, frequency, phase of a slight heading wobble

    def shifted(self, dt: float) -> "_Pass":
        return replace(self, t0=self.t0 + dt, t1=self.t1 + dt, t_end=self.t_end + dt)

    def centre(self, t: float) -> np.ndarray:
        return self.origin + self.speed * (t - self.t0) * np.array([math.cos(self.heading), math.sin(self.heading)])

    def affine(self, t: float) -> np.ndarray:
        amp, freq, phase = self.yaw
        return _affine(self.centre(t), self.heading + amp * math.sin(2 * math.pi * freq * t + phase))


def _slab(p: np.ndarray, d: np.ndarray, rect: tuple[float, float, float, float]) -> tuple[float, float]:
    """Parameters where the line p + s d enters and leaves ``rect`` (x0, y0, x1, y1)."""
    s_in, s_out = -math.inf, math.inf
    for axis in (0, 1):
        if abs(d[axis]) > 1e-9:
            a, b = sorted(((rect[axis] - p[axis]) / d[axis], (rect[axis + 2] - p[axis]) / d[axis]))
            s_in, s_out = max(s_in, a), min(s_out, b)
    return s_in, s_out


class SceneClip:
    """A short deterministic clip: ships cross the sea while the camera jitters.

    Ships move at constant speed along their heading, entering and leaving the frame; the camera
    shakes (smooth small translation and rotation of the whole frame); swell, glint and whitecaps
    animate. The sea is warped by the camera, but ships are drawn after it, in frame pixels, so
    each box is the exact box of the hull pixels in that frame, clipped to it. One quiet stretch
    (two in clips of 30 s or more) has no ship and no wake; most frames show 1 to 3 ships. Pixel
    scale matches :class:`SceneSpec` stills: a ship of length L px looks the same in both. Frames
    can be rendered in any order: frame ``i`` depends only on the constructor arguments and ``i``.

    Args:
        seed: non-negative seed.
        n_frames: number of frames.
        width: frame width in px.
        height: frame height in px.
        fps: frames per second (sets the time step of motion and of the video).
        ship_length: (min, max) ship length in px.
        hard_negative_rate: chance of a coastline and/or rocks in the clip.

    Example:
        >>> clip = SceneClip(seed=1, n_frames=30)
        >>> frame, boxes = next(clip.frames())
        >>> len(clip), frame.shape, boxes.dtype
        (30, (360, 640, 3), dtype('float32'))
    """

    _MARGIN = 24  # world border around the frame that camera shake may bring into view
    _JITTER = 16.0  # most pixels the shake moves a frame corner: 3 x 2.5 px per axis plus 0.7 deg

    def __init__(self, seed: int = 0, n_frames: int = 300, width: int = 640, height: int = 360, fps: float = 15.0,
                 ship_length: tuple[float, float] = (40.0, 120.0), hard_negative_rate: float = 0.4) -> None:
        _check_int("seed", seed, 0, _SEED_MAX)
        _check_int("n_frames", n_frames, 1, 10**6)
        _check_float("fps", fps, 0.0, 1000.0, low_open=True)
        self._spec = SceneSpec(height=height, width=width, ship_length=ship_length, hard_negative_rate=hard_negative_rate)
        self.seed, self.n_frames, self.width, self.height, self.fps = seed, n_frames, width, height, float(fps)
        world_rng, plan_rng, cam_rng = (np.random.default_rng(s) for s in
                                        np.random.default_rng([seed, 3]).integers(0, _SEED_MAX, size=3))
        m = self._MARGIN
        self._world = _World(world_rng, height + 2 * m, width + 2 * m, self._spec, cap_sets=3, strays=False)
        self._turb = _turbulence(self._world.fine[m : m + height, m : m + width])
        # shake: a few incommensurate sines per axis, smooth and never periodic within a clip
        self._shake = [(rng_amp, cam_rng.uniform(0.05, 0.6, 3), cam_rng.uniform(0, 2 * math.pi, 3))
                       for rng_amp in (cam_rng.uniform(0.5, 2.5, 3), cam_rng.uniform(0.5, 2.5, 3),
                                       cam_rng.uniform(0.0005, 0.004, 3))]
        self._passes = self._plan(plan_rng)

    def __len__(self) -> int:
        return self.n_frames

    def _camera(self, t: float) -> np.ndarray:
        """2x3 map from world to frame pixels at time ``t``."""
        dx, dy, rot = (float(np.sum(a * np.sin(2 * math.pi * f * t + p))) for a, f, p in self._shake)
        c, s = math.cos(rot), math.sin(rot)
        r = np.array([[c, -s], [s, c]])
        centre_w = np.array([self._world.w, self._world.h]) / 2
        centre_f = np.array([self.width, self.height]) / 2 + [dx, dy]
        return np.hstack([r, (centre_f - r @ centre_w)[:, None]])

    def _plan(self, rng: np.random.Generator) -> list[_Pass]:
        total = self.n_frames / self.fps
        m, j, w, h = self._MARGIN, self._JITTER, self.width, self.height
        free = cv2.distanceTransform((self._world.occupied == 0).astype(np.uint8), cv2.DIST_L2, 5)
        quiet = []
        # a crossing takes 6-20 s, so a second quiet stretch only fits a clip of 30 s or more
        for lo, hi in ((0.3, 0.5), (0.7, 0.82))[: 1 if total < 30 else 2]:
            mid, half = total * rng.uniform(lo, hi), max(0.5, total * rng.uniform(0.035, 0.06))
            quiet.append((mid - half, mid + half))
        passes: list[_Pass] = []
        for slot in range(3):
            if slot == 2 and rng.random() < 0.4:
                continue  # a third lane only sometimes: most frames show one or two ships
            cursor, first = (0.0 if slot == 0 else rng.uniform(0.0, 0.4) * total), True
            while cursor < total:
                made = None
                for _ in range(25):
                    ship = _make_ship(rng, self._spec.ship_length, self._spec.beam_ratio, moving=1.0)
                    heading = rng.uniform(0, 2 * math.pi)
                    d = np.array([math.cos(heading), math.sin(heading)])
                    p = np.array([m + rng.uniform(0.1, 0.9) * w, m + rng.uniform(0.15, 0.85) * h])
                    r = ship.length / 2 + j + 2
                    s_in, s_out = _slab(p, d, (m - r, m - r, m + w + r, m + h + r))
                    pts = np.round(p + np.arange(s_in, s_out, 6.0)[:, None] * d).astype(int)
                    pts = pts[(pts[:, 0] >= 0) & (pts[:, 0] < self._world.w) & (pts[:, 1] >= 0) & (pts[:, 1] < self._world.h)]
                    if len(pts) and free[pts[:, 1], pts[:, 0]].min() < 0.3 * ship.length + 4:
                        continue  # the lane crosses land or a rock
                    speed = rng.uniform(35, 90)
                    t1 = cursor + (s_out - s_in) / speed
                    cand = _Pass(ship, p + s_in * d, heading, speed, cursor, t1, t1 + (ship.wake + 10) / speed,
                                 (rng.uniform(0, 0.02), rng.uniform(0.05, 0.3), rng.uniform(0, 2 * math.pi)))
                    if slot == 0 and first:  # the clip opens with a ship already under way
                        cand = cand.shifted(-rng.uniform(0.2, 0.5) * (t1 - cursor))
                    cand = self._avoid_quiet(cand, quiet, first)
                    if cand is not None and not any(self._collide(cand, other) for other in passes):
                        made = cand
                        break
                if made is None:
                    cursor += rng.uniform(1, 3)
                    continue
                if made.t0 < total:
                    passes.append(made)
                cursor, first = made.t_end + rng.uniform(0.3, 3.0), False
        return passes

    @staticmethod
    def _avoid_quiet(p: _Pass, quiet: list[tuple[float, float]], first: bool) -> _Pass | None:
        for _ in range(4):
            hit = next(((q0, q1) for q0, q1 in quiet if p.t0 < q1 and p.t_end > q0), None)
            if hit is None:
                return p
            early = p.shifted(hit[0] - p.t_end)
            # a slot's first pass may move earlier while it stays on screen a while; others wait
            p = early if first and early.t1 > 1.0 else p.shifted(hit[1] - p.t0 + 0.2)
        return None

    @staticmethod
    def _collide(a: _Pass, b: _Pass) -> bool:
        lo, hi = max(a.t0, b.t0), min(a.t1, b.t1)
        for t in np.arange(lo, hi, 0.2):
            if np.linalg.norm(a.centre(t) - b.centre(t)) < (a.ship.length + b.ship.length) / 2 + 8:
                return True
        return False

    def _render(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = i / self.fps
        rng = np.random.default_rng([self.seed, 4, i])
        cam = self._camera(t)
        size = (self.width, self.height)
        img = cv2.warpAffine(self._world.compose(t, rng), cam, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        placed = []
        for p in self._passes:
            if p.t0 <= t <= p.t_end:
                a = p.affine(t)
                placed.append((p.ship, np.hstack([cam[:, :2] @ a[:, :2], (cam[:, :2] @ a[:, 2] + cam[:, 2])[:, None]])))
        water = cv2.warpAffine(self._world.water, cam, size, borderMode=cv2.BORDER_REPLICATE) if placed else None
        boxes, visible = _draw_ships(img, placed, [], water, self._world.sun, self._spec, self._turb)
        return _finish(img, rng, self._world.look), boxes, visible

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``i`` (RGB uint8) and its ship boxes (float32 (N, 4), x1/y1 exclusive)."""
        _check_int("i", i, 0, self.n_frames - 1)
        image, boxes, _ = self._render(i)
        return image, boxes

    def frames(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(frame, boxes)`` in order; every call starts over and yields the same frames."""
        for i in range(self.n_frames):
            image, boxes, _ = self._render(i)
            yield image, boxes

    def write(self, video_path: str | os.PathLike[str], boxes_path: str | os.PathLike[str]) -> None:
        """Write an mp4 (``mp4v``) and a JSONL of boxes, each atomically.

        JSONL has one line per frame: ``{"frame": i, "t": seconds, "boxes": [[x0, y0, x1, y1], ...],
        "visible": [share of each hull in the frame, ...]}``.

        Raises:
            DataError: ``video_path`` is not ``.mp4`` or OpenCV cannot open an mp4v writer.
        """
        video_path, boxes_path = Path(video_path), Path(boxes_path)
        if video_path.suffix.lower() != ".mp4":
            raise DataError(f"video_path: expected a .mp4 path, received {str(video_path)!r}")
        video_path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{video_path.name}.", suffix=".tmp.mp4", dir=video_path.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (self.width, self.height))
            if not writer.isOpened():
                raise DataError(f"{video_path}: expected OpenCV to open an mp4v VideoWriter, it did not "
                                f"(OpenCV {cv2.__version__} without a video backend?)")
            lines = []
            try:
                for i in range(self.n_frames):
                    image, boxes, visible = self._render(i)
                    writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                    lines.append(json.dumps({"frame": i, "t": round(i / self.fps, 6), "boxes": boxes.tolist(),
                                             "visible": [round(float(v), 3) for v in visible]}))
            finally:
                writer.release()
            write_text(boxes_path, "\n".join(lines) + "\n")
            os.replace(tmp, video_path)
        finally:
            tmp.unlink(missing_ok=True)

"""Ships seen from above: hull, deck, superstructure and cargo polygons, and drawing them with wakes and shadows."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge.synthetic.geometry import _FOAM, _apply, _area, _fill, _fixed, _pick
from edge.synthetic.spec import SceneSpec

# RGB palettes; every pick is jittered so no class is keyed to an exact colour.
_HULL = ((58, 60, 64), (226, 226, 220), (150, 32, 28), (26, 36, 72), (24, 24, 26), (214, 98, 30),
         (36, 84, 52), (44, 82, 150), (204, 170, 44), (104, 58, 34))
_DECK = ((118, 118, 114), (64, 88, 62), (124, 58, 44), (168, 128, 84), (184, 184, 178), (88, 104, 128))
_SUPER = ((238, 238, 232), (226, 216, 192), (204, 206, 206), (240, 236, 220), (214, 110, 40))
_CARGO = ((170, 50, 40), (40, 80, 140), (200, 160, 50), (60, 110, 70), (150, 150, 150), (190, 90, 40), (230, 230, 225))


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

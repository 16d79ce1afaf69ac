"""The sea without ships: water, swell, glint, whitecaps, cloud shadow, coast, rocks and stray wakes.

A :class:`_World` is built once per still or clip; :meth:`_World.compose` renders it at time ``t``
and :func:`_finish` adds the camera's gain, haze and grain.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge.synthetic.geometry import (
    _FOAM,
    _affine,
    _apply,
    _clipped_area,
    _fill,
    _fractal,
    _grid,
    _noise,
    _pick,
    _smoothstep,
)
from edge.synthetic.ships import _make_ship
from edge.synthetic.spec import SceneSpec

# RGB palettes; every pick is jittered so no class is keyed to an exact colour.
_WATER = ((16, 48, 84), (20, 66, 88), (26, 74, 80), (46, 70, 76), (12, 32, 56), (30, 88, 102), (36, 58, 68))
_SHALLOW = ((54, 128, 130), (70, 120, 110), (60, 110, 120))
_LAND = (((196, 178, 132), (180, 160, 112)), ((74, 98, 52), (46, 70, 38)), ((122, 120, 114), (96, 96, 92)),
         ((120, 96, 68), (96, 104, 60)))
_BEACH = ((206, 190, 146), (150, 146, 136))
_ROCK = ((96, 94, 90), (120, 112, 100), (78, 70, 62), (110, 96, 80), (140, 136, 128), (64, 62, 60))


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

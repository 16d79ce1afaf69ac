"""A deterministic clip of ships crossing the sea under a shaking camera (:class:`SceneClip`)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edge.atomic import write_text
from edge.errors import DataError
from edge.synthetic.geometry import _affine
from edge.synthetic.sea import _finish, _turbulence, _World
from edge.synthetic.ships import _draw_ships, _make_ship, _Ship
from edge.synthetic.spec import _SEED_MAX, SceneSpec, _check_float, _check_int

__all__ = ["SceneClip"]


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

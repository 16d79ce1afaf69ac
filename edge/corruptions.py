"""Camera conditions at sea as image corruptions, five severities each, in numpy and OpenCV.

The benchmark follows the idea of ImageNet-C (Hendrycks and Dietterich,
ICLR 2019: 15 corruptions in four groups, noise, blur, weather and digital,
each at 5 severities, scored by the mean over all of them). Eight of its
fifteen are conditions a camera on a vessel or a shore meets: Gaussian and
shot noise, defocus and motion blur, fog, brightness (here: glare), contrast
and JPEG. Three more are added that its fifteen lack: rain streaks, droplets
of spray on the lens (its extra ``spatter`` comes closest) and low light.
Every corruption is written here, not taken from the ``imagecorruptions``
package (the packaged ImageNet-C code), because:

- ``imagecorruptions`` 1.1.2 requires ``opencv-python``, the GUI build, which
  installs a second ``cv2`` over the ``opencv-python-headless`` that edgecam
  and its devices use, and it pulls scikit-image and SciPy into a device
  install that otherwise needs numpy and one runtime;
- it draws from numpy's global random state, so a corruption cannot be made
  deterministic per image without touching state the caller owns;
- its parameters are pixel sizes for 224-px ImageNet crops. Here a blur or a
  streak is sized in pixels of a 224-px reference view and scaled to the
  image (``px``), so a 96-px CIFAR input and a 1080p frame shown to the model
  at 1.5x see the same blur relative to the vessel;
- it has no rain streaks, no lens droplets (its ``spatter`` comes closest) and
  no darkening.

The severity parameters are this module's own, chosen so that severity 5 is a
condition a camera still records but a person would call bad.

Every corruption is deterministic for a seed, keeps the dtype (uint8) and
shape, returns the input unchanged at severity 0, and moves the image further
from the clean one at each severity: its random fields are drawn before the
severity is looked at, so two severities differ only in strength.

Example:
    >>> img = np.full((64, 64, 3), 120, np.uint8)
    >>> out = corrupt(img, "fog", 3, seed=0)
    >>> out.dtype, out.shape, bool((out != img).any())
    (dtype('uint8'), (64, 64, 3), True)
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod

import numpy as np

from edge.errors import ConfigError
from edge.preprocess import check_frame

# the name of the uncorrupted condition in robustness reports
CLEAN = "clean"
# what `edgecam train --weather maritime` never shows (training/weather.py): the report keeps them apart
UNSEEN_BY_WEATHER = ("rain", "droplets")

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIZE = 224.0  # blur and streak sizes are given in pixels of a 224-px view


class Corruption(ABC):
    """One condition at five severities. A subclass supplies ``levels`` and ``render``.

    The base checks the frame, returns a copy at severity 0, seeds the random
    generator from ``(seed, name)``, and rounds the float result back to uint8.
    """

    name: str = ""
    group: str = ""  # noise, blur, weather, light or digital
    levels: tuple = ()  # the parameter(s) at severities 1..5
    unit: str = ""  # what the parameter is, for the report

    @abstractmethod
    def render(self, image: np.ndarray, level, rng: np.random.Generator, px: float) -> np.ndarray:
        """The corrupted image, float32 in [0, 1] (clipping is done by the caller)."""

    def __call__(self, image: np.ndarray, severity: int, seed: int = 0, px: float | None = None) -> np.ndarray:
        check_frame(image, f" for the {self.name} corruption")
        if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
            raise ConfigError(f"severity: expected an integer 0..5; received {severity!r}")
        if severity == 0:
            return image.copy()
        if px is None:
            px = min(image.shape[:2]) / REFERENCE_SIZE
        if not px > 0:
            raise ConfigError(f"px: expected pixels per reference pixel > 0; received {px!r}")
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(self.name.encode())])
        out = self.render(image.astype(np.float32) / 255.0, self.levels[severity - 1], rng, float(px))
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.filter2D(image, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT)


def _disk(radius: float) -> np.ndarray:
    """A flat disk with an antialiased rim (a defocused lens spreads a point over one)."""
    r = max(float(radius), 0.5)
    n = int(np.ceil(r))
    y, x = np.mgrid[-n : n + 1, -n : n + 1]
    k = np.clip(r + 0.5 - np.hypot(x, y), 0.0, 1.0)
    return k / k.sum()


def _line(length: float, angle_deg: float) -> np.ndarray:
    """A centred line of ``length`` pixels at ``angle_deg``, splatted bilinearly (a linear motion blur)."""
    n = int(np.ceil(length / 2)) + 1
    k = np.zeros((2 * n + 1, 2 * n + 1), np.float64)
    t = np.linspace(-length / 2, length / 2, max(2, int(np.ceil(length * 4))))
    xs = n + t * np.cos(np.radians(angle_deg))
    ys = n - t * np.sin(np.radians(angle_deg))
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), w)
    return k / k.sum()


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """Low-frequency noise in [0, 1]: two octaves of a random grid, upsampled (patchy haze, uneven light)."""
    import cv2

    h, w = shape
    field = np.zeros((h, w), np.float32)
    for octave, amp in ((cells, 1.0), (cells * 2, 0.5)):
        grid = rng.standard_normal((octave + 1, octave + 1)).astype(np.float32)
        field += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / (hi - lo) if hi > lo else np.full((h, w), 0.5, np.float32)


class GaussianNoise(Corruption):
    """Sensor read noise: the same noise pattern at every severity, scaled by its standard deviation."""

    name, group, unit = "gaussian_noise", "noise", "std (full scale 1)"
    levels = (0.03, 0.06, 0.10, 0.15, 0.22)

    def render(self, image, level, rng, px):
        return image + level * rng.standard_normal(image.shape, dtype=np.float32)


class ShotNoise(Corruption):
    """Photon noise: variance proportional to the signal (the normal approximation of a Poisson count)."""

    name, group, unit = "shot_noise", "noise", "photons at full scale"
    levels = (500.0, 200.0, 80.0, 30.0, 12.0)

    def render(self, image, level, rng, px):
        return image + np.sqrt(image / level) * rng.standard_normal(image.shape, dtype=np.float32)


class DefocusBlur(Corruption):
    """An out-of-focus lens: a disk of this radius (reference pixels)."""

    name, group, unit = "defocus_blur", "blur", "disk radius (px at 224)"
    levels = (2.0, 3.0, 4.5, 6.5, 9.0)

    def render(self, image, level, rng, px):
        return _filter(image, _disk(level * px))


class MotionBlur(Corruption):
    """The camera turning during the exposure (a vessel's roll, a pan): a line of this length."""

    name, group, unit = "motion_blur", "blur", "streak length (px at 224)"
    levels = (5.0, 9.0, 14.0, 20.0, 28.0)

    def render(self, image, level, rng, px):
        angle = rng.uniform(-30.0, 30.0)  # mostly sideways, as a roll or a pan smears a horizon
        return _filter(image, _line(level * px, angle))


class Fog(Corruption):
    """Haze or sea fog (Koschmieder): ``I = J t + A (1 - t)``, transmission ``t = exp(-beta * density)``.

    The density is patchy and thicker toward the top of the frame, where a
    sea camera looks farthest; ``A`` is a bright grey airlight.
    """

    name, group, unit = "fog", "weather", "extinction beta"
    levels = (0.35, 0.7, 1.1, 1.6, 2.3)

    def render(self, image, level, rng, px):
        h, w = image.shape[:2]
        patches = _smooth_field((h, w), rng)
        airlight = rng.uniform(0.78, 0.9)
        depth = 1.0 - 0.4 * np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]  # 1 at the top, 0.6 at the bottom
        t = np.exp(-level * (0.5 + 0.5 * patches) * depth)[..., None]
        return image * t + airlight * (1.0 - t)


class Rain(Corruption):
    """Rain streaks: bright, slanted, motion-blurred drops over a slightly dimmed scene.

    Drop seeds are drawn once (a uniform draw per pixel); a higher severity
    keeps every seed of a lower one and adds more, with longer, more opaque streaks.
    """

    name, group, unit = "rain", "weather", "(share of pixels seeding a streak, length px at 224, opacity)"
    levels = ((0.002, 8.0, 0.45), (0.004, 11.0, 0.55), (0.007, 14.0, 0.65), (0.011, 17.0, 0.75), (0.016, 20.0, 0.85))

    def render(self, image, level, rng, px):
        share, length, opacity = level
        h, w = image.shape[:2]
        u = rng.random((h, w), dtype=np.float32)
        angle = 90.0 + rng.uniform(-15.0, 15.0)  # near vertical, leaning with the wind
        n = max(2.0, length * px)
        streaks = _filter((u < share).astype(np.float32), _line(n, angle)) * n  # 1 along a lone streak
        alpha = np.clip(streaks * opacity, 0.0, 1.0)[..., None]
        return image * (1.0 - 0.15 * opacity) * (1.0 - alpha) + 0.9 * alpha


class Droplets(Corruption):
    """Spray on the lens: round drops through which the scene shows blurred and lighter.

    Positions and radii are drawn once for the most drops; a severity shows
    the first ``level`` drops per 224x224 area.
    """

    name, group, unit = "droplets", "weather", "drops per 224x224 area"
    levels = (3.0, 6.0, 10.0, 15.0, 22.0)

    def render(self, image, level, rng, px):
        import cv2

        h, w = image.shape[:2]
        area = (h * w) / (REFERENCE_SIZE * px) ** 2
        most = int(np.ceil(self.levels[-1] * area))
        xs, ys = rng.uniform(0, w, most), rng.uniform(0, h, most)
        radii = rng.uniform(6.0, 18.0, most) * px
        n = int(np.ceil(level * area))
        mask = np.zeros((h, w), np.float32)
        for x, y, r in zip(xs[:n], ys[:n], np.maximum(radii[:n], 0.5)):
            x0, x1 = max(0, int(x - r)), min(w, int(x + r) + 2)
            y0, y1 = max(0, int(y - r)), min(h, int(y + r) + 2)
            if x0 >= x1 or y0 >= y1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            drop = np.clip((1.0 - np.hypot(xx - x, yy - y) / r) * 4.0, 0.0, 1.0)  # flat, with a soft rim
            np.maximum(mask[y0:y1, x0:x1], drop, out=mask[y0:y1, x0:x1])
        sigma = max(1.0, 6.0 * px)  # a drop is a small lens focused far off the scene
        seen = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) * 0.75 + 0.2
        m = mask[..., None]
        return image * (1.0 - m) + seen * m


class Glare(Corruption):
    """Sun glare and over-exposure: a brighter exposure plus a bloom around a point in the upper half."""

    name, group, unit = "glare", "light", "bloom strength"
    levels = (0.1, 0.2, 0.32, 0.45, 0.6)

    def render(self, image, level, rng, px):
        h, w = image.shape[:2]
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.0, 0.5) * h
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        bloom = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * (0.35 * max(h, w)) ** 2))[..., None]
        gain = 1.0 + level
        return image * gain + level * bloom


class LowLight(Corruption):
    """Dusk or night: the exposure scaled down, then rounded to 8 bits (detail in the dark is lost).

    The camera's automatic gain, which would brighten the frame again and
    amplify its noise, is not modelled; ``gaussian_noise`` covers the noise.
    """

    name, group, unit = "low_light", "light", "exposure factor"
    levels = (0.5, 0.33, 0.2, 0.12, 0.07)

    def render(self, image, level, rng, px):
        return image * level


class Contrast(Corruption):
    """Flat light, a dirty window, low sun: the image pulled toward its mean grey."""

    name, group, unit = "contrast", "digital", "contrast factor"
    levels = (0.7, 0.5, 0.35, 0.24, 0.16)

    def render(self, image, level, rng, px):
        mean = image.mean()
        return mean + (image - mean) * level


class Jpeg(Corruption):
    """Heavy JPEG or stream compression, at this quality (OpenCV's encoder)."""

    name, group, unit = "jpeg", "digital", "JPEG quality"
    levels = (35.0, 20.0, 12.0, 8.0, 5.0)

    def render(self, image, level, rng, px):
        import cv2

        bgr = np.ascontiguousarray(np.clip(np.rint(image[..., ::-1] * 255.0), 0, 255).astype(np.uint8))
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(level)])
        if not ok:
            raise ConfigError(f"jpeg: OpenCV could not encode a {bgr.shape} image at quality {int(level)}")
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    GaussianNoise(), ShotNoise(), DefocusBlur(), MotionBlur(), Fog(), Rain(), Droplets(), Glare(), LowLight(),
    Contrast(), Jpeg())}


def select(names: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Corruption names from ``all`` / None, a comma list or a list; ConfigError for an unknown one."""
    if names is None or names == "all":
        return list(CORRUPTIONS)
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in items if n not in CORRUPTIONS]
    if unknown or not items:
        raise ConfigError(f"corruptions: expected 'all' or some of {list(CORRUPTIONS)}; received {names!r}")
    return items


def corrupt(image: np.ndarray, name: str, severity: int, seed: int = 0, px: float | None = None) -> np.ndarray:
    """``image`` (RGB uint8) under corruption ``name`` at ``severity`` 0..5, deterministic for ``seed``.

    ``px`` is the image's pixels per pixel of a 224-px reference view
    (default: its short side / 224); blur radii and streak lengths scale with it.
    """
    if name not in CORRUPTIONS:
        raise ConfigError(f"corruption: expected one of {list(CORRUPTIONS)}; received {name!r}")
    return CORRUPTIONS[name](image, severity, seed, px)


__all__ = ["CORRUPTIONS", "SEVERITIES", "Corruption", "corrupt", "select"]

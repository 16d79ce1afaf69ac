"""Options of a still scene (:class:`SceneSpec`) and the range checks every generator option goes through."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.errors import ConfigError

__all__ = ["SceneSpec", "SpecError"]

_SEED_MAX = 2**63 - 1


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

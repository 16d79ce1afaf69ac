"""``--retain``: keep the recorded video under a size and/or age limit, deleting the oldest closed segments first.

A recorder on a vessel runs until its card is full unless something bounds
it. With a limit, every time a video segment closes, the closed segments of
every run under the ``--out`` root (``*/video/NNNNNN.mp4``) are listed oldest
first (by modification time, then name) and deleted until the rest fit:
older than the age limit goes, then the oldest until the total is within the
size limit. The newest closed segment is never deleted, and the open one
(``.writing/``) is never looked at. When the disk runs low (``--min-free-mb``),
the oldest segments are deleted until there is room again, before the video
is stopped. Frame records, events and summaries are
small and are kept (``frames.jsonl`` has its own rotation). Each deletion is
logged and counted; ``segments.jsonl`` keeps its line for the deleted file.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge.errors import ConfigError

__all__ = ["RetainPolicy", "Retention"]

log = logging.getLogger(__name__)

_SIZE = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}
_AGE = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SEGMENT = re.compile(r"\d{6,}\.mp4")


@dataclass(frozen=True)
class RetainPolicy:
    """The limits: ``max_bytes`` and/or ``max_age_s`` (None: no limit of that kind).

    Example:
        >>> RetainPolicy.parse("8GB,7d")
        RetainPolicy(max_bytes=8000000000, max_age_s=604800.0)
        >>> RetainPolicy.parse("500MB").max_age_s is None
        True
    """

    max_bytes: int | None = None
    max_age_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_bytes is None and self.max_age_s is None:
            raise ConfigError("RetainPolicy needs max_bytes, max_age_s or both; received neither")
        if self.max_bytes is not None and (isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int)
                                           or self.max_bytes < 1):
            raise ConfigError(f"RetainPolicy.max_bytes must be an int >= 1; received {self.max_bytes!r}")
        if self.max_age_s is not None and not (isinstance(self.max_age_s, (int, float)) and 0 < self.max_age_s < math.inf):
            raise ConfigError(f"RetainPolicy.max_age_s must be a number > 0; received {self.max_age_s!r}")

    @classmethod
    def parse(cls, spec: str) -> "RetainPolicy":
        """``SIZE``, ``AGE`` or ``SIZE,AGE``: sizes in KB/MB/GB/TB (10**3 steps), ages in s/m/h/d."""
        max_bytes: int | None = None
        max_age: float | None = None
        for part in (p.strip().lower() for p in str(spec).split(",") if p.strip()):
            m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]+)", part)
            if m and m.group(2) in _SIZE and max_bytes is None:
                max_bytes = int(float(m.group(1)) * _SIZE[m.group(2)])
            elif m and m.group(2) in _AGE and max_age is None:
                max_age = float(m.group(1)) * _AGE[m.group(2)]
            else:
                raise ConfigError(f"--retain expects SIZE, AGE or SIZE,AGE (e.g. 8GB, 7d, 8GB,7d; sizes KB/MB/GB/TB, "
                                  f"ages s/m/h/d); received {spec!r}")
        if max_bytes is None and max_age is None:
            raise ConfigError(f"--retain expects SIZE, AGE or SIZE,AGE (e.g. 8GB, 7d, 8GB,7d); received {spec!r}")
        if max_bytes == 0 or max_age == 0:
            raise ConfigError(f"--retain limits must be above 0; received {spec!r}")
        return cls(max_bytes, max_age)


class Retention:
    """Apply a :class:`RetainPolicy` to the closed video segments of every run under ``root``.

    Args:
        root: the ``--out`` root (run folders below it), or one run's folder.
        policy: the limits.
        clock: wall-clock seconds (None: ``time.time``), compared with the files' modification times.
    """

    def __init__(self, root: str | os.PathLike[str], policy: RetainPolicy, clock: Callable[[], float] | None = None) -> None:
        self.root, self.policy, self.clock = Path(root), policy, clock or time.time
        self.deleted = 0
        self.deleted_bytes = 0

    def segments(self) -> list[tuple[float, Path, int]]:
        """Closed segments under the root, oldest first: ``(mtime, path, bytes)``."""
        found = []
        for folder in (self.root / "video", *self.root.glob("*/video")):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if _SEGMENT.fullmatch(path.name):
                    try:
                        st = path.stat()
                    except FileNotFoundError:  # another run's retention took it
                        continue
                    found.append((st.st_mtime, path, st.st_size))
        return sorted(found)

    def make_room(self, enough: Callable[[], bool]) -> int:
        """Delete the oldest closed segments (never the newest) until ``enough()``; returns how many went.

        Used when the disk runs low: with a ``--retain`` limit, old video goes before the recording stops.
        """
        deleted = 0
        for _, path, size in self.segments()[:-1]:
            if enough():
                break
            deleted += self._delete(path, size, "to make room on a low disk") is True
        return deleted

    def _delete(self, path: Path, size: int, why: str) -> bool | None:
        """Unlink one closed segment: True (deleted, counted, logged), None (already gone), False (refused, logged)."""
        try:
            path.unlink()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("--retain could not delete %s: %s", path, exc)
            return False
        self.deleted += 1
        self.deleted_bytes += size
        log.info("--retain deleted %s (%.1f MB, %s)", path, size / 1e6, why)
        return True

    def apply(self) -> int:
        """Delete what the limits say must go; returns how many segments were deleted now."""
        found = self.segments()
        total = sum(size for _, _, size in found)
        now, deleted = self.clock(), 0
        for mtime, path, size in found[:-1]:  # the newest closed segment stays
            too_old = self.policy.max_age_s is not None and now - mtime > self.policy.max_age_s
            too_big = self.policy.max_bytes is not None and total > self.policy.max_bytes
            if not (too_old or too_big):
                break
            outcome = self._delete(path, size, "too old" if too_old else "over the size limit")
            if outcome is False:
                continue
            total -= size  # deleted now, or already gone
            deleted += outcome is True
        return deleted

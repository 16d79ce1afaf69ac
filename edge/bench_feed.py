"""Frames for the bench's pipeline loop: a pool in memory (synthetic, or given) or a source read as it goes."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edge.errors import SourceError
from edge.sources import FrameSource

__all__ = ["SYNTHETIC_POOL", "FrameFeed", "FeedSource"]

# how many distinct synthetic frames are pre-generated and cycled through
SYNTHETIC_POOL = 32


class FrameFeed:
    """Frames for the pipeline loop: an in-memory pool (synthetic, or given) or a live source read per call."""

    def __init__(self, source: str | Sequence[np.ndarray] | None, pool: int = SYNTHETIC_POOL) -> None:
        self.description: str
        self._pool: list[np.ndarray] = []
        self._src = None
        self._i = 0
        if source is not None and not isinstance(source, str):
            self._pool = [np.asarray(f) for f in source]
            self.description = f"{len(self._pool)} frames given in memory"
        else:
            from edge.sources import open_source

            spec = source or "synthetic"
            src = open_source(spec)
            if spec.lower().startswith("synthetic"):
                # pre-generated: the loop then pays for taking a frame, not for drawing one
                with src:
                    while len(self._pool) < pool and (frame := src.read()) is not None:
                        self._pool.append(frame)
                self.description = f"{spec} ({len(self._pool)} frames pre-generated in memory)"
            else:
                src.open()
                self._src = src
                self.description = spec
        if self._src is None and not self._pool:
            raise SourceError(f"bench: the source {source!r} gave no frames")

    def next(self) -> np.ndarray:
        if self._src is None:
            frame = self._pool[self._i % len(self._pool)]
            self._i += 1
            return frame
        frame = self._src.read()
        if frame is None and not getattr(self._src, "is_live", False):
            self._src.close()  # end of a file: start it again
            self._src.open()
            frame = self._src.read()
        if frame is None:
            raise SourceError(f"bench: {self.description!r} stopped giving frames")
        return frame

    def close(self) -> None:
        if self._src is not None:
            self._src.close()

    def as_source(self) -> "FeedSource":
        """A frame source that reads this feed, for a :class:`ThreadedCapture`."""
        return FeedSource(self)


class FeedSource(FrameSource):
    """Endless frames from a :class:`FrameFeed` (which restarts files itself)."""

    def __init__(self, feed: FrameFeed) -> None:
        self.feed = feed

    def _open(self) -> None:
        pass

    def _read(self) -> np.ndarray | None:
        return self.feed.next()

    def __repr__(self) -> str:
        return f"FeedSource({self.feed.description!r})"

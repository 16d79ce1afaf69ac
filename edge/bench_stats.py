"""The bench's statistics, pure functions of durations and a clock (tested with a fake clock, not ``sleep``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from edge.errors import ConfigError

__all__ = ["Clock", "time_loop", "LatencySummary", "stage_medians", "split_rounds", "thread_label", "parse_threads",
           "ratio"]

Clock = Callable[[], float]


def time_loop(step: Callable[[], object], n: int, clock: Clock = time.perf_counter) -> tuple[list[float], float]:
    """Run ``step`` ``n`` times; return each iteration's seconds and the total wall seconds.

    One clock reading per iteration: iteration ``i`` lasts from the end of
    ``i - 1`` to the end of ``i``, so loop overhead is counted and the
    durations add up to the wall time exactly.
    """
    if n < 1:
        raise ConfigError(f"bench: expected at least 1 iteration; received {n}")
    durations = []
    start = prev = clock()
    for _ in range(n):
        step()
        now = clock()
        durations.append(now - prev)
        prev = now
    return durations, prev - start


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles (linear interpolation, as numpy's default) and throughput of one loop."""

    n: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    fps: float

    @classmethod
    def from_durations(cls, durations_s: Sequence[float], wall_s: float | None = None) -> "LatencySummary":
        """Summarise per-iteration durations (seconds); throughput is ``n / wall_s`` (default: their sum)."""
        d = np.asarray(durations_s, dtype=np.float64) * 1e3
        if d.ndim != 1 or len(d) == 0 or not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValueError(f"expected a non-empty 1-D list of finite durations >= 0; received {np.shape(durations_s)}")
        wall = float(d.sum() / 1e3) if wall_s is None else float(wall_s)
        p50, p95, p99 = np.percentile(d, [50, 95, 99])
        return cls(
            n=len(d),
            mean_ms=float(d.mean()),
            p50_ms=float(p50),
            p95_ms=float(p95),
            p99_ms=float(p99),
            min_ms=float(d.min()),
            max_ms=float(d.max()),
            fps=len(d) / wall if wall > 0 else float("inf"),
        )


def stage_medians(timings: Sequence[dict[str, float]]) -> dict[str, float]:
    """Median per stage over per-frame ``timings_ms`` dicts (stages missing in a frame are skipped)."""
    stages: dict[str, list[float]] = {}
    for t in timings:
        for stage, ms in t.items():
            stages.setdefault(stage, []).append(float(ms))
    return {stage: float(np.median(v)) for stage, v in stages.items()}


def split_rounds(frames: int, rounds: int) -> list[int]:
    """``frames`` iterations split into ``rounds`` near-equal parts, larger first (none empty)."""
    if rounds < 1:
        raise ConfigError(f"bench: expected at least 1 round; received {rounds}")
    rounds = min(rounds, frames)
    base, extra = divmod(frames, rounds)
    return [base + (i < extra) for i in range(rounds)]


def thread_label(threads: int | None) -> str:
    return "default" if threads is None else str(threads)


def parse_threads(text: str) -> list[int | None]:
    """``--threads`` as given on the command line: ``2``, ``1,2`` or ``default,1``; no duplicates."""
    out: list[int | None] = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if part == "default":
            value = None
        else:
            try:
                value = int(part)
            except ValueError:
                value = 0
            if value < 1:
                raise ConfigError(f"--threads: expected positive integers or 'default', comma-separated "
                                  f"(e.g. 1,2); received {text!r}")
        if value not in out:
            out.append(value)
    return out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator

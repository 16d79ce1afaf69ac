"""What this machine offers the runtime: the processors this process may use, and its physical cores."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["read_cpuinfo", "usable_cpus", "physical_cores"]


def read_cpuinfo() -> str:
    """``/proc/cpuinfo`` as text; empty where there is none (macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def usable_cpus() -> set[int]:
    """The processors in this process's affinity mask (all of them where the OS has no mask)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def physical_cores(cpuinfo: str | None = None, usable: set[int] | None = None) -> int:
    """Cores this process may run on, counting a core's hyper-threads once.

    Reads ``cpuinfo`` (``physical id`` / ``core id`` per processor) for the
    processors in ``usable`` (default: the affinity mask); where those fields
    are missing (Arm boards, which have no SMT) every usable processor counts.
    """
    usable = usable_cpus() if usable is None else usable
    cpuinfo = read_cpuinfo() if cpuinfo is None else cpuinfo
    cores: set[tuple[str, str]] = set()
    for block in cpuinfo.split("\n\n"):
        fields = {k.strip(): v.strip() for k, sep, v in (line.partition(":") for line in block.splitlines()) if sep}
        try:
            processor = int(fields["processor"])
        except (KeyError, ValueError):
            continue
        if processor in usable and "core id" in fields:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    return max(1, len(cores) or len(usable))

"""What this machine offers the runtime: the processors this process may use, its physical cores, and
where a measurement was taken (CPU model, SIMD flags, library versions, peak memory)."""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

__all__ = ["read_cpuinfo", "usable_cpus", "physical_cores", "parse_cpuinfo", "machine_info", "peak_rss_mib"]


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


FLAGS_OF_INTEREST = ("asimddp", "dotprod", "i8mm", "bf16", "sve", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
# Arm "CPU part" numbers (MIDR) of the cores edgecam profiles mention
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76",
             "0xd05": "Cortex-A55", "0xd42": "Cortex-A78AE", "0xd0c": "Neoverse-N1"}


def parse_cpuinfo(text: str) -> tuple[str | None, list[str]]:
    """CPU model and flags of interest from ``/proc/cpuinfo`` text (x86 or Arm)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    model = fields.get("model name") or fields.get("Model")
    part = fields.get("CPU part", "").lower()
    if part:
        core = ARM_PARTS.get(part, f"Arm part {part}")
        model = f"{model} ({core})" if model else core
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return model, [f for f in FLAGS_OF_INTEREST if f in flags]


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Where a result was measured: CPU, cores, SIMD flags that matter for int8, library versions."""
    model, flags = parse_cpuinfo(read_cpuinfo())
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "cores_usable": len(usable_cpus()),
        "flags": flags,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("numpy", "ai-edge-litert", "tflite-runtime", "onnxruntime",
                                              "onnxruntime-gpu", "opencv-python-headless", "edgecam")},
    }


def peak_rss_mib() -> float:
    """Process high-water mark of resident memory, in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024

"""``edgecam devices --check``: what each profile would get on this machine.

A profile names a runtime and, for onnxruntime, execution providers. This
module asks the installed runtimes what they offer and says, per profile,
whether it would run as written here, or on what it would fall back. A Jetson
profile on a machine without NVIDIA's GPU build is reported as "GPU providers
configured, not available here", not as an error: that is the expected state
on every build and CI machine.

Only onnxruntime is imported (its provider list is the question). LiteRT is
looked up without importing it, and ``tensorflow.lite`` is never tried, so the
check never pulls TensorFlow in.

Example:
    >>> from devices import load_profile
    >>> probe = RuntimeProbe(arch="x86_64", onnxruntime="1.32.0",
    ...                      onnx_providers=("CPUExecutionProvider",), litert=None)
    >>> check_profile(load_profile("jetson-orin-nano"), probe).status.value
    'gpu-not-available'
"""

from __future__ import annotations

import enum
import importlib.metadata
import importlib.util
import platform
from dataclasses import dataclass
from typing import Sequence

from devices.registry import Backend, DeviceProfile

CPU = "CPUExecutionProvider"
LITERT_DISTRIBUTIONS = (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"))


class Status(str, enum.Enum):
    """How a profile fares on this machine."""

    READY = "ready"  # the runtime and every provider it names are here
    GPU_PARTIAL = "gpu-partial"  # some GPU providers are here, some are not
    GPU_NOT_AVAILABLE = "gpu-not-available"  # GPU providers named, none here: runs on the CPU provider
    RUNTIME_MISSING = "runtime-missing"  # the runtime itself is not installed


@dataclass(frozen=True)
class RuntimeProbe:
    """What this machine offers: its architecture and the inference runtimes installed.

    Attributes:
        arch: ``platform.machine()``.
        onnxruntime: its version, or None when it cannot be imported.
        onnx_providers: ``onnxruntime.get_available_providers()``.
        litert: ``"<module> <version>"`` of the first TFLite interpreter package found, or None.
    """

    arch: str
    onnxruntime: str | None
    onnx_providers: tuple[str, ...]
    litert: str | None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def probe_runtimes() -> RuntimeProbe:
    """Look at this machine (imports onnxruntime if it is installed; nothing else)."""
    try:
        import onnxruntime as ort

        version, providers = str(ort.__version__), tuple(ort.get_available_providers())
    except ImportError:
        version, providers = None, ()
    litert = None
    for module, dist in LITERT_DISTRIBUTIONS:
        if importlib.util.find_spec(module) is not None:
            litert = f"{module} {_version(dist)}"
            break
    return RuntimeProbe(platform.machine(), version, providers, litert)


@dataclass(frozen=True)
class ProfileCheck:
    """One profile against one machine."""

    profile: str
    backend: str
    status: Status
    message: str
    notes: tuple[str, ...] = ()


def check_profile(profile: DeviceProfile, probe: RuntimeProbe) -> ProfileCheck:
    """What ``profile`` gets on the machine ``probe`` describes."""
    notes = []
    if profile.arch.value != probe.arch:
        notes.append(f"written for {profile.arch.value}; this machine is {probe.arch}")
    if profile.backend is Backend.LITERT:
        if probe.litert is None:
            return ProfileCheck(profile.name, "litert", Status.RUNTIME_MISSING,
                                f"needs a TFLite interpreter (ai-edge-litert, see {profile.requirements}); "
                                "none is installed here", tuple(notes))
        return ProfileCheck(profile.name, "litert", Status.READY, f"runs here on {probe.litert}", tuple(notes))

    wanted_gpu = [p for p in profile.execution_providers if p != CPU]
    if probe.onnxruntime is None:
        return ProfileCheck(profile.name, "onnxruntime", Status.RUNTIME_MISSING,
                            f"needs onnxruntime ({'onnxruntime-gpu, ' if wanted_gpu else ''}see {profile.requirements}); "
                            "not installed here", tuple(notes))
    offered = ", ".join(probe.onnx_providers) or "no providers"
    here = [p for p in wanted_gpu if p in probe.onnx_providers]
    absent = [p for p in wanted_gpu if p not in probe.onnx_providers]
    build = f"onnxruntime {probe.onnxruntime} offers {offered}"
    if not wanted_gpu:
        return ProfileCheck(profile.name, "onnxruntime", Status.READY, f"runs here on {CPU} ({build})", tuple(notes))
    if not here:
        return ProfileCheck(profile.name, "onnxruntime", Status.GPU_NOT_AVAILABLE,
                            f"GPU providers configured, not available here: {', '.join(absent)} ({build}); "
                            f"a run here falls back to {CPU}", tuple(notes))
    if absent:
        return ProfileCheck(profile.name, "onnxruntime", Status.GPU_PARTIAL,
                            f"GPU providers configured; available here: {', '.join(here)}; "
                            f"not available here: {', '.join(absent)} ({build})", tuple(notes))
    notes.append("whether the session starts them shows in the 'runs on' line of edgecam run or edgecam bench")
    return ProfileCheck(profile.name, "onnxruntime", Status.READY,
                        f"GPU providers configured and available here: {', '.join(here)} ({build})", tuple(notes))


def format_checks(checks: Sequence[ProfileCheck], probe: RuntimeProbe) -> str:
    """Plain text for ``edgecam devices --check``: the machine, then one block per profile."""
    lines = [
        f"This machine: {probe.arch}; onnxruntime "
        + (f"{probe.onnxruntime} ({', '.join(probe.onnx_providers)})" if probe.onnxruntime else "not installed")
        + f"; TFLite interpreter: {probe.litert or 'none'}",
        "",
    ]
    width = max(len(c.profile) for c in checks) if checks else 0
    for c in checks:
        lines.append(f"{c.profile.ljust(width)}  {c.backend:<11}  {c.message}")
        lines.extend(f"{'':{width}}  {'':<11}  note: {n}" for n in c.notes)
    return "\n".join(lines)


__all__ = ["ProfileCheck", "RuntimeProbe", "Status", "check_profile", "format_checks", "probe_runtimes"]

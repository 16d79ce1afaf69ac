"""A run's settings: a device profile merged with the flags given on the command line.

Example:
    >>> from devices import load_profile, resolve_run_settings
    >>> resolve_run_settings(load_profile("rpi4"), threads=2, source=None).threads
    2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devices.enums import ArtifactFormat, Backend, CaptureMode
from devices.registry import FIELD_PARSERS, DeviceProfile, load_profile, parse_text
from edge.backends import formats_of, runs_format
from edge.backends.base import GpuOptions
from edge.errors import ConfigError

__all__ = ["RunSettings", "resolve_run_settings"]


@dataclass(frozen=True)
class RunSettings:
    """What ``edgecam run`` uses after merging a profile with explicit flags.

    ``origin`` maps each setting to where its value came from: ``"flag"``,
    ``"profile:<name>"``, ``"default"`` or ``"unset"``.
    """

    backend: Backend | None
    artifact_format: ArtifactFormat | None
    execution_providers: tuple[str, ...]
    threads: int | None
    input_size: int | None
    capture_mode: CaptureMode | None
    capture_width: int | None
    capture_height: int | None
    capture_fps: int | None
    source: str | None
    gpu: GpuOptions = field(default_factory=GpuOptions)
    origin: dict[str, str] = field(default_factory=dict, compare=False)


# setting name -> profile attribute it defaults to
_SETTING_FROM_PROFILE = {
    "backend": "backend",
    "artifact_format": "artifact_format",
    "execution_providers": "execution_providers",
    "threads": "threads",
    "input_size": "input_size",
    "capture_mode": "capture_mode",
    "capture_width": "capture_width",
    "capture_height": "capture_height",
    "capture_fps": "capture_fps",
    "source": "camera_source",
}


def resolve_run_settings(profile: DeviceProfile | str | None, **explicit_flags: Any) -> RunSettings:
    """Merge a device profile with flags given on the command line.

    The rule:

    1. A flag whose value is not ``None`` wins; ``None`` means "not given", so
       a CLI can pass every flag through unconditionally.
    2. Otherwise the profile's value is used (``source`` defaults to the
       profile's ``camera_source``).
    3. If a flag switches ``backend`` away from the profile's, the profile's
       backend-specific values no longer fit and are not inherited:
       ``artifact_format`` becomes the first of the profile's preferred and
       fallback formats that the new backend runs (else ``onnx-fp32`` /
       ``tflite-fp32``), and ``execution_providers`` becomes
       ``("CPUExecutionProvider",)`` for onnxruntime and ``()`` for litert.
    4. Without a profile (``None``) only flags count; the rest stays ``None``.
    5. ``gpu`` is a dict of :class:`~edge.backends.base.GpuOptions` fields
       (``None`` values: not given) laid over the profile's ``onnxruntime_gpu``,
       else over the defaults; the result is always a ``GpuOptions``.

    Flags are validated like profile values (``threads=0`` raises), an unknown
    flag name raises, and ``threads`` above the profile's core count raises.

    Args:
        profile: a :class:`DeviceProfile`, the name of a shipped one, or None.
        **explicit_flags: any of ``backend, artifact_format, execution_providers,
            threads, input_size, capture_mode, capture_width, capture_height,
            capture_fps, source, gpu``.

    Example:
        >>> s = resolve_run_settings("rpi5", threads=2, backend=None)
        >>> s.threads, s.origin["threads"], s.backend.value, s.origin["backend"]
        (2, 'flag', 'litert', 'profile:rpi5')
    """
    if isinstance(profile, str):
        profile = load_profile(profile)
    where = "run settings (flag)"
    gpu, gpu_origin = _gpu_setting(profile, explicit_flags.pop("gpu", None) or {}, where)
    flags = _parsed_flags(explicit_flags, where)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, attr in _SETTING_FROM_PROFILE.items():
        if key in flags:
            values[key], origin[key] = flags[key], "flag"
        elif profile is not None:
            values[key], origin[key] = getattr(profile, attr), f"profile:{profile.name}"
        else:
            values[key], origin[key] = (() if key == "execution_providers" else None), "unset"
    if profile is not None and values["backend"] is not profile.backend:
        _leave_profile_backend(profile, flags, values, origin)
    values["gpu"], origin["gpu"] = gpu, gpu_origin
    _check_settings(values, profile, where)
    return RunSettings(**values, origin=origin)


def _parsed_flags(explicit_flags: dict[str, Any], where: str) -> dict[str, Any]:
    """The flags that were given (not None), each parsed like the profile's value; an unknown name raises."""
    unknown = sorted(set(explicit_flags) - set(_SETTING_FROM_PROFILE))
    if unknown:
        raise ConfigError(
            f"run settings: unknown flag {unknown[0]!r}; expected one of {', '.join(_SETTING_FROM_PROFILE)}, gpu"
        )
    flags: dict[str, Any] = {}
    for key, value in explicit_flags.items():
        if value is None:
            continue
        if key == "source":
            flags[key] = parse_text(key, str(value), where)
        else:
            flags[key] = FIELD_PARSERS[_SETTING_FROM_PROFILE[key]](key, value, where)
    return flags


def _gpu_setting(profile: DeviceProfile | None, gpu_flags: Any, where: str) -> tuple[GpuOptions, str]:
    """The GPU options (the flags given laid over the profile's, else the defaults) and where they came from."""
    gpu_base = (profile.onnxruntime_gpu if profile is not None else None) or GpuOptions()
    gpu_given = {k: v for k, v in dict(gpu_flags).items() if v is not None}
    gpu = GpuOptions.from_dict(gpu_base.to_dict() | gpu_given, f"{where}: gpu")
    if gpu_given:
        return gpu, "flag"
    return gpu, f"profile:{profile.name}" if profile is not None and profile.onnxruntime_gpu else "default"


def _leave_profile_backend(profile: DeviceProfile, flags: dict[str, Any], values: dict[str, Any],
                           origin: dict[str, str]) -> None:
    """A flag chose another backend than the profile's: its format and providers are not inherited (rule 3)."""
    backend = values["backend"]
    if "artifact_format" not in flags:
        candidates = (profile.artifact_format, *profile.fallback_formats)
        fitting = [f for f in candidates if runs_format(backend.value, f.value)]
        # fp32: the format every backend of a family runs
        default = next(ArtifactFormat(f) for f in sorted(formats_of(backend.value), key=lambda f: not f.endswith("-fp32")))
        values["artifact_format"] = fitting[0] if fitting else default
        origin["artifact_format"] = f"profile:{profile.name}" if fitting else "default"
    if "execution_providers" not in flags:
        values["execution_providers"] = ("CPUExecutionProvider",) if backend is Backend.ONNXRUNTIME else ()
        origin["execution_providers"] = "default"


def _check_settings(values: dict[str, Any], profile: DeviceProfile | None, where: str) -> None:
    """The merged settings agree with each other and with the device."""
    if values["backend"] is not None and values["artifact_format"] is not None:
        if not runs_format(values["backend"].value, values["artifact_format"].value):
            raise ConfigError(
                f"{where}: artifact_format expected a format the {values['backend'].value} backend runs; "
                f"received {values['artifact_format'].value!r}"
            )
    if values["backend"] is Backend.LITERT and values["execution_providers"]:
        raise ConfigError(
            f"{where}: execution_providers expected none with the litert backend; "
            f"received {list(values['execution_providers'])!r}"
        )
    if profile is not None and values["threads"] is not None and values["threads"] > profile.cores:
        raise ConfigError(
            f"{where}: threads expected at most the {profile.cores} cores of {profile.name}; received {values['threads']}"
        )

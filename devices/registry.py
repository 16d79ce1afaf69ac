"""Device profiles: what to run on a Raspberry Pi, a Jetson or an x86 box, and why.

A profile is a JSON file in ``devices/profiles/`` (pure data, shipped as package
data) checked against :class:`DeviceProfile` when it is loaded. Nothing here
installs anything or touches the network: a profile *names* a requirements file,
a person or a provisioning script installs it.

Example:
    >>> from devices import load_profile
    >>> p = load_profile("rpi4")
    >>> p.backend.value, p.artifact_format.value, p.threads
    ('litert', 'tflite-int8', 4)

A run's settings, a profile merged with the flags given, come from :mod:`devices.run_settings`.
"""

from __future__ import annotations

import enum
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from devices.enums import Arch, ArtifactFormat, Backend, CaptureMode
from edge.backends import runs_format
from edge.backends.base import ONNX_PROVIDER_ORDER, GpuOptions
from edge.errors import ConfigError

SCHEMA_VERSION = 1


# the pip extra of edgecam (pyproject.toml) that installs each backend's runtime, and nothing else
EXTRA_OF_BACKEND = {Backend.LITERT: "edge-litert", Backend.ONNXRUNTIME: "edge-onnx"}

# the onnxruntime providers a profile may name, in the one order edgecam asks for them
ONNX_PROVIDERS = ONNX_PROVIDER_ORDER


def _enum(cls: type[enum.Enum]):
    def parse(key: str, value: Any, where: str) -> enum.Enum:
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise ConfigError(f"{where}: key {key!r} expected one of {choices}; received {value!r}") from None

    return parse


def parse_text(key: str, value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: key {key!r} expected a non-empty string; received {value!r}")
    return value


def _int_range(lo: int, hi: int):
    def parse(key: str, value: Any, where: str) -> int:
        # bool is an int subclass: "threads": true must not pass as 1
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"{where}: key {key!r} expected an integer from {lo} to {hi}; received {value!r}")
        return value

    return parse


def _formats(key: str, value: Any, where: str) -> tuple[ArtifactFormat, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: key {key!r} expected a list of artifact formats; received {value!r}")
    return tuple(_enum(ArtifactFormat)(key, v, where) for v in value)


def _providers(key: str, value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: key {key!r} expected a list of onnxruntime provider names; received {value!r}")
    unknown = [v for v in value if v not in ONNX_PROVIDERS]
    if unknown:
        raise ConfigError(
            f"{where}: key {key!r} expected names from {', '.join(ONNX_PROVIDERS)}; received {unknown!r}"
        )
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: key {key!r} expected each provider once; received {list(value)!r}")
    if [p for p in ONNX_PROVIDERS if p in value] != list(value):
        raise ConfigError(
            f"{where}: key {key!r} expected the order {', '.join(ONNX_PROVIDERS)} (TensorRT before CUDA before CPU); "
            f"received {list(value)!r}"
        )
    return tuple(value)


def _gpu(key: str, value: Any, where: str) -> GpuOptions | None:
    if value is None or isinstance(value, GpuOptions):
        return value
    try:
        return GpuOptions.from_dict(value, f"{where}: key {key!r}")
    except ConfigError as exc:
        msg = str(exc)
        # GpuOptions names its own fields as onnxruntime_gpu.<field>; say which profile too
        raise ConfigError(msg if msg.startswith(where) else f"{where}: key {key!r}: {msg}") from None


def _requirements(key: str, value: Any, where: str) -> str:
    text = parse_text(key, value, where)
    parts = text.split("/")
    if len(parts) != 2 or parts[0] != "requirements" or not parts[1].endswith(".txt") or parts[1] == ".txt":
        raise ConfigError(
            f"{where}: key {key!r} expected a path of the form 'requirements/<name>.txt' "
            f"inside the devices package; received {value!r}"
        )
    return text


def _schema(key: str, value: Any, where: str) -> int:
    if value != SCHEMA_VERSION or isinstance(value, bool):
        raise ConfigError(f"{where}: key {key!r} expected {SCHEMA_VERSION}; received {value!r}")
    return value


def _notes(key: str, value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: key {key!r} expected a list of non-empty strings; received {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class DeviceProfile:
    """One device: hardware facts, the runtime and artifact to use on it, and why.

    Built from a JSON object with exactly these keys (``notes`` may be left out).
    Every value is checked on creation; a bad one raises :class:`ConfigError`
    naming the key, what was expected and what was received.

    Attributes:
        schema_version: version of this layout, currently 1.
        name: short id used on the command line (``--device rpi5``).
        description: one line for people.
        arch: ``aarch64`` or ``x86_64``.
        cpu: CPU core type, e.g. ``Cortex-A72``.
        cores: CPU cores on the board.
        os: the operating system the profile was written for.
        python: the Python version that OS ships.
        backend: ``litert`` or ``onnxruntime``.
        artifact_format: the exported artifact to prefer.
        fallback_formats: what to use, in order, when the preferred one is missing.
        rationale: why this backend and format, with the numbers behind it.
        execution_providers: onnxruntime providers in priority order (empty for litert).
        threads: CPU threads for the interpreter (1 .. cores).
        input_size: side of the square model input, in pixels.
        capture_mode: default :class:`CaptureMode` for live sources.
        capture_width, capture_height, capture_fps: what to ask the camera for.
        camera_source: default source: ``picamera2``, a GStreamer pipeline, or a device index.
        requirements: pinned requirements for the device, relative to the ``devices`` package.
        extra: the pip extra of edgecam that holds the device's runtime (``edge-litert`` for
            litert, ``edge-onnx`` for onnxruntime); its requirements file agrees with it.
        notes: what works and what does not, in plain words.
        onnxruntime_gpu: settings for the TensorRT and CUDA providers
            (:class:`edge.backends.base.GpuOptions`: device id, TensorRT fp16,
            workspace, engine cache folder); only with a GPU provider listed.
    """

    schema_version: int
    name: str
    description: str
    arch: Arch
    cpu: str
    cores: int
    os: str
    python: str
    backend: Backend
    artifact_format: ArtifactFormat
    fallback_formats: tuple[ArtifactFormat, ...]
    rationale: str
    execution_providers: tuple[str, ...]
    threads: int
    input_size: int
    capture_mode: CaptureMode
    capture_width: int
    capture_height: int
    capture_fps: int
    camera_source: str
    requirements: str
    extra: str
    notes: tuple[str, ...] = field(default=())
    onnxruntime_gpu: GpuOptions | None = None

    def __post_init__(self) -> None:
        where = f"device profile {self.name!r}" if isinstance(self.name, str) else "device profile"
        for f in fields(self):
            value = FIELD_PARSERS[f.name](f.name, getattr(self, f.name), where)
            object.__setattr__(self, f.name, value)
        self._check_consistency(where)

    def _check_consistency(self, where: str) -> None:
        if self.threads > self.cores:
            raise ConfigError(
                f"{where}: key 'threads' expected at most the {self.cores} cores of the device; received {self.threads}"
            )
        for key, fmt in [("artifact_format", self.artifact_format)] + [("fallback_formats", f) for f in self.fallback_formats]:
            if not runs_format(self.backend.value, fmt.value):
                raise ConfigError(
                    f"{where}: key {key!r} expected a format the {self.backend.value} backend runs; received {fmt.value!r}"
                )
        if self.artifact_format in self.fallback_formats:
            raise ConfigError(
                f"{where}: key 'fallback_formats' expected formats other than the preferred "
                f"{self.artifact_format.value!r}; received {[f.value for f in self.fallback_formats]!r}"
            )
        if self.backend is Backend.ONNXRUNTIME and not self.execution_providers:
            raise ConfigError(f"{where}: key 'execution_providers' expected at least one provider for onnxruntime; received []")
        if self.backend is Backend.LITERT and self.execution_providers:
            raise ConfigError(
                f"{where}: key 'execution_providers' expected [] for the litert backend; "
                f"received {list(self.execution_providers)!r}"
            )
        if self.onnxruntime_gpu is not None and not set(self.execution_providers) - {"CPUExecutionProvider"}:
            raise ConfigError(
                f"{where}: key 'onnxruntime_gpu' expected only with TensorrtExecutionProvider or CUDAExecutionProvider "
                f"in 'execution_providers'; received providers {list(self.execution_providers)!r}"
            )
        if self.backend in EXTRA_OF_BACKEND and self.extra != EXTRA_OF_BACKEND[self.backend]:
            raise ConfigError(
                f"{where}: key 'extra' expected {EXTRA_OF_BACKEND[self.backend]!r} for the {self.backend.value} backend; "
                f"received {self.extra!r}"
            )
        self._check_pipeline_caps(where)
        if self.execution_providers and self.execution_providers[-1] != "CPUExecutionProvider":
            raise ConfigError(
                f"{where}: key 'execution_providers' expected 'CPUExecutionProvider' last as the fallback; "
                f"received {list(self.execution_providers)!r}"
            )

    def _check_pipeline_caps(self, where: str) -> None:
        # a GStreamer pipeline states its own caps; the capture_* keys must say the same, not something else
        if "!" not in self.camera_source:
            return
        found = {
            "capture_width": re.search(r"\bwidth=(\d+)", self.camera_source),
            "capture_height": re.search(r"\bheight=(\d+)", self.camera_source),
            "capture_fps": re.search(r"\bframerate=(\d+)/1\b", self.camera_source),
        }
        for key, match in found.items():
            if match is None or int(match.group(1)) != getattr(self, key):
                raise ConfigError(
                    f"{where}: key {key!r} expected the value the 'camera_source' pipeline asks for; received "
                    f"{getattr(self, key)} against {match.group(0) if match else 'no such cap'} in the pipeline"
                )

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "DeviceProfile":
        """Build a profile from a parsed JSON object, refusing unknown and missing keys."""
        where = f"device profile {source}"
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object; received {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; expected only keys from {', '.join(known)}")
        required = [f.name for f in fields(cls) if f.name not in ("notes", "onnxruntime_gpu")]
        missing = [k for k in required if k not in data]
        if missing:
            raise ConfigError(f"{where}: missing key {missing[0]!r}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``DeviceProfile.from_dict(p.to_dict()) == p``."""
        out = asdict(self)
        if out["onnxruntime_gpu"] is None:
            del out["onnxruntime_gpu"]
        for key, value in out.items():
            if isinstance(value, enum.Enum):
                out[key] = value.value
            elif isinstance(value, tuple):
                out[key] = [v.value if isinstance(v, enum.Enum) else v for v in value]
        return out

    def requirements_text(self) -> str:
        """Contents of the device's requirements file (read from the installed package)."""
        return resources.files("devices").joinpath(self.requirements).read_text(encoding="utf-8")


# profile key -> its parser; devices.run_settings parses a flag with the parser of the key it overrides
FIELD_PARSERS = {
    "schema_version": _schema,
    "name": parse_text,
    "description": parse_text,
    "arch": _enum(Arch),
    "cpu": parse_text,
    "cores": _int_range(1, 256),
    "os": parse_text,
    "python": parse_text,
    "backend": _enum(Backend),
    "artifact_format": _enum(ArtifactFormat),
    "fallback_formats": _formats,
    "rationale": parse_text,
    "execution_providers": _providers,
    "threads": _int_range(1, 256),
    "input_size": _int_range(32, 1024),
    "capture_mode": _enum(CaptureMode),
    "capture_width": _int_range(16, 8192),
    "capture_height": _int_range(16, 8192),
    "capture_fps": _int_range(1, 240),
    "camera_source": parse_text,
    "requirements": _requirements,
    "extra": parse_text,
    "notes": _notes,
    "onnxruntime_gpu": _gpu,
}


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    folder = resources.files("devices.profiles")
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_profile(name_or_path: str | os.PathLike[str]) -> DeviceProfile:
    """Load a shipped profile by name, or any profile JSON file by path.

    A value containing a path separator or ending in ``.json`` is a path;
    anything else is the name of a shipped profile (no fuzzy matching).

    Example:
        >>> load_profile("rpi5").cpu
        'Cortex-A76'
    """
    text_arg = os.fspath(name_or_path)
    if isinstance(name_or_path, Path) or text_arg.endswith(".json") or os.sep in text_arg:
        path = Path(text_arg)
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"device profile {str(path)!r}: cannot be read ({exc.strerror})") from None
        return _parse(raw, str(path))
    names = list_profiles()
    if text_arg not in names:
        raise ConfigError(f"unknown device profile {text_arg!r}; expected one of {', '.join(names)} or a path to a .json file")
    raw = resources.files("devices.profiles").joinpath(f"{text_arg}.json").read_text(encoding="utf-8")
    return _parse(raw, repr(text_arg))


def _parse(raw: str, source: str) -> DeviceProfile:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"device profile {source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return DeviceProfile.from_dict(data, source)

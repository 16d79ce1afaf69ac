"""The model contract: what every exported artifact promises its consumers.

A manifest is a JSON file beside an artifact (``model.tflite`` ->
``model.tflite.manifest.json``). It names the input (name, shape, dtype,
layout, value range, quantisation), the preprocessing, the outputs by name
*and role* (``scores``, ``features``), the labels, the CAM weights of the dense
layer, the decision thresholds and the artifact's sha256. The runtime binds
outputs by role through this file, never by position: TFLite reorders the
outputs of multi-output models.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from edge import atomic
from edge.errors import ArtifactError, ManifestError
from edge.formats import format_keys, format_spec

SCHEMA = "edgecam.manifest"
SCHEMA_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
ROLES = ("scores", "features")
# keys a manifest may leave out (older manifests have none of the last two)
OPTIONAL_KEYS = ("tools", "extra", "signature", "train_input_size")
# a localisation head adds both of these (centre heatmap, log box sizes) or neither
HEAD_ROLES = ("centres", "sizes")


class Task(StrEnum):
    """What a model's scores mean. A ``StrEnum``: it compares equal to its string in run.json."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"


TASKS = tuple(t.value for t in Task)


class ArtifactPathError(ManifestError):
    """A manifest's ``artifact`` would reach outside the manifest's folder (absolute, ``..`` or a symlink out)."""


def _check_artifact_name(artifact: Any) -> None:
    """Refuse an artifact name that is not a plain relative path below the manifest's folder.

    Checked on the text alone (no file system), so a hostile manifest is refused
    before anything is opened, hashed or sized.
    """
    if not isinstance(artifact, str) or not artifact.strip():
        raise ArtifactPathError(f"artifact: expected a file name relative to the manifest's folder; received {artifact!r}")
    posix, windows = PurePosixPath(artifact), PureWindowsPath(artifact)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or artifact.startswith(("/", "\\")):
        raise ArtifactPathError(
            f"artifact: expected a path relative to the manifest's folder; received the absolute path {artifact!r}")
    if ".." in posix.parts or ".." in windows.parts:
        raise ArtifactPathError(
            f"artifact: expected a path inside the manifest's folder; received {artifact!r}, which climbs out with '..'")


def __getattr__(name: str) -> Any:
    # the formats a manifest may name: the keys of the format table (edge.formats), plugins included
    if name == "FORMATS":
        return tuple(format_keys())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Quantization:
    """Affine quantisation of one tensor: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)

    def quantize(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        info = np.iinfo(dtype)
        q = np.round(x.astype(np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(q, info.min, info.max).astype(dtype)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of an artifact.

    ``name`` is the name consumers use (``image``, ``scores``, ``features``);
    ``tensor`` is the name inside the artifact (TFLite signature key or ONNX
    graph name), which may differ.
    """

    name: str
    role: str
    shape: tuple[int, ...]
    dtype: str
    tensor: str
    quantization: Quantization | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if isinstance(self.quantization, dict):
            object.__setattr__(self, "quantization", Quantization(**self.quantization))
        if self.dtype not in ("float32", "float16", "uint8", "int8"):
            raise ManifestError(f"tensor {self.name!r}: expected dtype float32, float16, uint8 or int8; received {self.dtype!r}")


@dataclass(frozen=True)
class CamSpec:
    """The dense layer after global pooling: CAM = features @ weights (+ bias)."""

    weights: np.ndarray  # (K, C)
    bias: np.ndarray  # (C,)
    pooling: str  # "max" or "avg" (pool, then dense) or "cell" (dense per cell, then max)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float32)
        b = np.asarray(self.bias, dtype=np.float32).reshape(-1)
        if w.ndim != 2 or w.shape[1] != b.shape[0]:
            raise ManifestError(f"cam: expected weights (K, C) and bias (C,); received {w.shape} and {b.shape}")
        if self.pooling not in ("max", "avg", "cell"):
            raise ManifestError(f"cam.pooling: expected 'max', 'avg' or 'cell'; received {self.pooling!r}")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", b)


@dataclass(frozen=True)
class MixedPrecision:
    """Layers of an int8 artifact kept in float (``edgecam export --int8-float``).

    Stored in the manifest's ``extra["int8_float"]``, so a reader that does not
    know it still loads the manifest; this class validates it when it is there.

    Attributes:
        mode: ``auto`` (chosen against targets) or ``explicit`` (named by the user).
        float_layers: Keras layer names computed in float.
        float_mac_share: their share of the model's multiply-accumulates.
        targets: ``agreement``, ``cam_r`` and ``max_float_share`` the choice aimed at.
        met: whether the targets held on the held-out calibration images.
        agreement, cam_r: what was measured there, against the float model.
    """

    mode: str
    float_layers: tuple[str, ...]
    float_mac_share: float
    targets: dict[str, float]
    met: bool
    agreement: float
    cam_r: float
    measured_on: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "explicit"):
            raise ManifestError(f"int8_float.mode: expected 'auto' or 'explicit'; received {self.mode!r}")
        object.__setattr__(self, "float_layers", tuple(str(n) for n in self.float_layers))
        if not 0.0 <= float(self.float_mac_share) <= 1.0:
            raise ManifestError(f"int8_float.float_mac_share: expected a share in [0, 1]; received {self.float_mac_share}")
        missing = sorted({"agreement", "cam_r", "max_float_share"} - set(self.targets))
        if missing:
            raise ManifestError(f"int8_float.targets: missing {missing}")

    @classmethod
    def from_dict(cls, d: Any) -> "MixedPrecision":
        if not isinstance(d, dict):
            raise ManifestError(f"int8_float: expected an object; received {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ManifestError(f"int8_float: unknown keys {unknown}; expected only {sorted(known)}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ManifestError(f"int8_float: {exc}") from exc


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated manifest. Build with :func:`load_manifest` or :meth:`from_dict`."""

    format: str
    artifact: str
    sha256: str
    size_bytes: int
    task: Task  # a string from run.json is taken and checked
    labels: tuple[str, ...]
    negative_label: str | None
    thresholds: tuple[float, ...]
    threshold_rule: str
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    input_size: tuple[int, int]
    preprocessing: dict[str, Any]
    cam: CamSpec
    tools: dict[str, str] = field(default_factory=dict)
    signature: str | None = None  # the TFLite signature a runtime calls; None for formats without one
    train_input_size: tuple[int, int] | None = None  # (h, w) the model was trained at, when known
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # where the manifest was read from; not serialised

    def __post_init__(self) -> None:
        if self.train_input_size is not None:
            size = tuple(int(v) for v in self.train_input_size)
            if len(size) != 2 or min(size) < 1:
                raise ManifestError(f"train_input_size: expected [h, w] of positive integers; received {self.train_input_size!r}")
            object.__setattr__(self, "train_input_size", size)
        if self.signature is not None and (not isinstance(self.signature, str) or not self.signature):
            raise ManifestError(f"signature: expected a signature name or null; received {self.signature!r}")
        if self.format not in format_keys():
            raise ManifestError(f"format: expected one of {', '.join(format_keys())}; received {self.format!r}")
        if self.task not in TASKS:
            raise ManifestError(f"task: expected one of {', '.join(TASKS)}; received {self.task!r}")
        object.__setattr__(self, "task", Task(self.task))
        if len(self.thresholds) != len(self.labels):
            raise ManifestError(
                f"thresholds: expected one per label ({len(self.labels)}); received {len(self.thresholds)}"
            )
        roles = sorted(o.role for o in self.outputs)
        if roles not in (sorted(ROLES), sorted(ROLES + HEAD_ROLES)):
            raise ManifestError(f"outputs: expected one output per role {list(ROLES)} (plus {list(HEAD_ROLES)} for a "
                                f"localisation head); received roles {roles}")
        if self.has_head != ("head" in self.extra):
            raise ManifestError("outputs: a localisation head's outputs and extra.head (stride, threshold) go together; "
                                f"received roles {roles} and extra keys {sorted(self.extra)}")
        if self.cam.weights.shape[1] != len(self.labels):
            raise ManifestError(
                f"cam.weights: expected {len(self.labels)} columns (one per label); received {self.cam.weights.shape}"
            )
        _check_artifact_name(self.artifact)
        if "int8_float" in self.extra:
            if not format_spec(self.format).needs_calibration:
                raise ManifestError(f"extra.int8_float: only int8 formats keep layers in float; this is {self.format}")
            MixedPrecision.from_dict(self.extra["int8_float"])

    @property
    def mixed_precision(self) -> MixedPrecision | None:
        """The layers kept in float, for an int8 artifact exported with ``--int8-float``; else None."""
        d = self.extra.get("int8_float")
        return None if d is None else MixedPrecision.from_dict(d)

    @property
    def has_head(self) -> bool:
        """True when the artifact also has the localisation head's outputs (``centres``, ``sizes``)."""
        return any(o.role in HEAD_ROLES for o in self.outputs)

    def output(self, role: str) -> TensorSpec:
        """The output that plays ``role`` (``scores`` or ``features``)."""
        for o in self.outputs:
            if o.role == role:
                return o
        raise ManifestError(f"no output with role {role!r}; outputs are {[o.role for o in self.outputs]}")

    @property
    def artifact_path(self) -> Path:
        """The artifact beside the manifest; raises ArtifactPathError if it resolves outside that folder."""
        _check_artifact_name(self.artifact)
        base = self.path.parent if self.path is not None else Path(".")
        path = base / self.artifact
        real_base, real = base.resolve(), path.resolve()
        if real != real_base and real_base not in real.parents:
            # a symlink (the file or a folder on the way) that leads elsewhere on disk
            raise ArtifactPathError(
                f"artifact: expected a file inside {real_base}; received {self.artifact!r}, "
                f"which resolves to {real} (a symlink out of the manifest's folder)")
        return path

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": SCHEMA, "version": SCHEMA_VERSION}
        for f in fields(self):
            if f.name == "path":
                continue
            d[f.name] = getattr(self, f.name)
        d["input"] = _tensor_dict(self.input)
        d["outputs"] = [_tensor_dict(o) for o in self.outputs]
        d["cam"] = {"weights": self.cam.weights.tolist(), "bias": self.cam.bias.tolist(), "pooling": self.cam.pooling}
        d["labels"] = list(self.labels)
        d["thresholds"] = list(self.thresholds)
        d["input_size"] = list(self.input_size)
        d["task"] = self.task.value
        d["train_input_size"] = None if self.train_input_size is None else list(self.train_input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path | None = None) -> "Manifest":
        where = f" in {path}" if path else ""
        if not isinstance(d, dict):
            raise ManifestError(f"expected a JSON object{where}; received {type(d).__name__}")
        if d.get("schema") != SCHEMA:
            raise ManifestError(f"schema: expected {SCHEMA!r}{where}; received {d.get('schema')!r}")
        if d.get("version") != SCHEMA_VERSION:
            raise ManifestError(
                f"version: this edgecam reads manifest version {SCHEMA_VERSION}; received {d.get('version')!r}{where}. "
                "Re-export the model with this edgecam version."
            )
        known = {f.name for f in fields(cls)} - {"path"}
        body = {k: v for k, v in d.items() if k not in ("schema", "version")}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ManifestError(f"unknown keys{where}: {unknown}; expected only {sorted(known)}")
        missing = sorted(k for k in known - set(body) if k not in OPTIONAL_KEYS)
        if missing:
            raise ManifestError(f"missing keys{where}: {missing}")
        extra = dict(body.get("extra", {}))
        # manifests written before these were fields kept them in extra; they still load
        signature = body["signature"] if "signature" in body else extra.pop("signature", None)
        train_size = body["train_input_size"] if "train_input_size" in body else extra.pop("train_input_size", None)
        try:
            return cls(
                format=body["format"],
                artifact=body["artifact"],
                sha256=body["sha256"],
                size_bytes=int(body["size_bytes"]),
                task=body["task"],
                labels=tuple(body["labels"]),
                negative_label=body["negative_label"],
                thresholds=tuple(float(t) for t in body["thresholds"]),
                threshold_rule=body["threshold_rule"],
                input=TensorSpec(**body["input"]),
                outputs=tuple(TensorSpec(**o) for o in body["outputs"]),
                input_size=tuple(int(v) for v in body["input_size"]),
                preprocessing=dict(body["preprocessing"]),
                cam=CamSpec(**body["cam"]),
                tools=dict(body.get("tools", {})),
                signature=signature,
                train_input_size=train_size,
                extra=extra,
                path=path,
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise ManifestError(f"malformed manifest{where}: {exc}") from exc


def _tensor_dict(t: TensorSpec) -> dict[str, Any]:
    d = asdict(t)
    d["shape"] = list(t.shape)
    return d


def manifest_path_for(artifact: str | Path) -> Path:
    """``model.tflite`` -> ``model.tflite.manifest.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Write ``manifest`` atomically to ``path``."""
    return atomic.write_json(path, manifest.to_dict())


def load_manifest(path: str | Path, verify: bool = True) -> Manifest:
    """Read and validate a manifest; with ``verify`` check the artifact's size and sha256.

    ``path`` may be the manifest itself or the artifact beside which it lies.

    Example:
        >>> m = load_manifest("runs/demo/export/model_int8.tflite.manifest.json")  # doctest: +SKIP
        >>> m.output("features").shape  # doctest: +SKIP
        (1, 11, 20, 1280)
    """
    path = Path(path)
    if not path.name.endswith(MANIFEST_SUFFIX) and path.suffix != ".json":
        path = manifest_path_for(path)
    if not path.is_file():
        raise ManifestError(f"expected a manifest file at {path}; none exists")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"expected JSON in {path}; could not parse it: {exc}") from exc
    manifest = Manifest.from_dict(data, path=path)
    if verify:
        verify_artifact(manifest)
    return manifest


def verify_artifact(manifest: Manifest) -> None:
    """Refuse an artifact that is missing, truncated or not the one the manifest describes."""
    art = manifest.artifact_path
    if not art.is_file():
        raise ArtifactError(f"manifest {manifest.path} names artifact {art}; no such file")
    size = art.stat().st_size
    if size != manifest.size_bytes:
        raise ArtifactError(
            f"artifact {art}: manifest expects {manifest.size_bytes} bytes; file has {size} "
            "(truncated or replaced; re-export or fix the manifest)"
        )
    digest = sha256_file(art)
    if digest != manifest.sha256:
        raise ManifestError(
            f"artifact {art}: manifest expects sha256 {manifest.sha256[:16]}…; file has {digest[:16]}… "
            "(the manifest belongs to another artifact)"
        )


def find_manifests(path: str | Path) -> list[Path]:
    """All manifests in a folder (sorted), or ``[path]`` for one manifest or artifact."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob(f"*{MANIFEST_SUFFIX}"))
        if not found:
            raise ManifestError(f"expected *{MANIFEST_SUFFIX} files in {path}; found none")
        return found
    if path.name.endswith(MANIFEST_SUFFIX):
        return [path]
    return [manifest_path_for(path)]

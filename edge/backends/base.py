"""The backend extension point: one small base class, one file per runtime."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edge.errors import ArtifactError, ConfigError, FrameError, reject_unknown_keys
from edge.machine import physical_cores
from edge.manifest import Manifest

log = logging.getLogger("edgecam.backends")


# onnxruntime execution providers edgecam asks for, in this order of preference: TensorRT builds
# its own engine (the fastest on a Jetson), CUDA runs what TensorRT rejects, the CPU runs the rest.
ONNX_PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ONNX_PROVIDER_ORDER[:2]


def _check_int(where: str, value: Any, lo: int, hi: int) -> int:
    # bool is an int subclass: True must not pass as 1
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}: expected an integer from {lo} to {hi}; received {value!r}")
    return value


@dataclass(frozen=True)
class GpuOptions:
    """onnxruntime's TensorRT and CUDA providers: what edgecam asks them for.

    The CPU provider and LiteRT ignore these. A device profile sets them under
    ``onnxruntime_gpu``; ``edgecam run`` and ``edgecam bench`` flags override them.

    Attributes:
        device_id: the CUDA device (0 on a Jetson, which has one GPU).
        tensorrt_fp16: let TensorRT pick fp16 kernels where they are faster.
            Int8 is not a setting: it is on exactly when the artifact is the
            QDQ-quantised ``onnx-int8``, whose Q/DQ nodes carry the scales.
        tensorrt_workspace_mib: the most scratch memory TensorRT may use while
            it builds an engine, in MiB.
        tensorrt_engine_cache: folder for built engines, so that the next run
            loads them instead of building again (which takes minutes). A
            relative folder lies inside the run's folder and may not leave it;
            an absolute one is used as configured. ``None`` turns caching off.

    Example:
        >>> GpuOptions.from_dict({"tensorrt_workspace_mib": 2048}).tensorrt_workspace_mib
        2048
    """

    device_id: int = 0
    tensorrt_fp16: bool = True
    tensorrt_workspace_mib: int = 1024
    tensorrt_engine_cache: str | None = "trt-engines"

    def __post_init__(self) -> None:
        _check_int("onnxruntime_gpu.device_id", self.device_id, 0, 63)
        _check_int("onnxruntime_gpu.tensorrt_workspace_mib", self.tensorrt_workspace_mib, 16, 1 << 20)
        if not isinstance(self.tensorrt_fp16, bool):
            raise ConfigError(f"onnxruntime_gpu.tensorrt_fp16: expected true or false; received {self.tensorrt_fp16!r}")
        cache = self.tensorrt_engine_cache
        if cache is not None:
            if not isinstance(cache, (str, os.PathLike)) or not str(cache).strip():
                raise ConfigError(
                    f"onnxruntime_gpu.tensorrt_engine_cache: expected a folder path or null; received {cache!r}"
                )
            object.__setattr__(self, "tensorrt_engine_cache", os.fspath(cache))

    @classmethod
    def from_dict(cls, data: Any, where: str = "onnxruntime_gpu") -> "GpuOptions":
        """Build from a JSON object, refusing unknown keys."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object; received {data!r}")
        reject_unknown_keys(cls, data, where)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def engine_cache_dir(self, run_dir: str | os.PathLike[str] | None) -> Path | None:
        """The engine cache folder for a run writing to ``run_dir`` (not created here).

        Raises:
            ConfigError: a relative folder that would leave ``run_dir`` (``../x``).
        """
        if self.tensorrt_engine_cache is None:
            return None
        cache = Path(self.tensorrt_engine_cache).expanduser()
        if cache.is_absolute():
            return cache
        if run_dir is None:
            return None
        root = Path(run_dir).resolve()
        target = (root / cache).resolve()
        if target != root and root not in target.parents:
            raise ConfigError(
                f"onnxruntime_gpu.tensorrt_engine_cache: expected a folder inside the run folder {root} "
                f"or an absolute path; received {self.tensorrt_engine_cache!r}, which resolves to {target}"
            )
        return target


@dataclass(frozen=True)
class BackendOptions:
    """Runtime settings.

    Attributes:
        threads: intra-op threads (XNNPACK / onnxruntime); ``None`` means one
            per physical core this process may use (:func:`edge.machine.physical_cores`).
            That is onnxruntime's own default; LiteRT's Python interpreter
            would otherwise run one thread. ``edgecam bench --threads 1,2``
            shows whether leaving a core to capture and output is faster.
        xnnpack: LiteRT only: apply the XNNPACK delegate (the default in LiteRT).
        providers: onnxruntime execution providers to ask for, a subsequence of
            ``ONNX_PROVIDER_ORDER`` (TensorRT, CUDA, CPU, in that order); those
            this onnxruntime build lacks are skipped with a logged reason, and
            the CPU provider is always added last.
        input_size: (h, w) to run at instead of the manifest's; needs an
            artifact with free height and width (edgecam exports them so).
        spin_wait: onnxruntime only: let idle intra-op threads spin between
            runs. Off by default: spinning wins a bare invoke loop, but in
            ``edgecam run`` it takes the CPU from the capture thread that
            prepares the next frame, and the loop as a whole gets slower
            (see the README's bench section).
        gpu: settings for the TensorRT and CUDA providers (:class:`GpuOptions`).
        run_dir: the folder this run writes to; a relative TensorRT engine
            cache lies inside it. ``None``: only an absolute cache folder is used.
    """

    threads: int | None = None
    xnnpack: bool = True
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    input_size: tuple[int, int] | None = None
    spin_wait: bool = False
    gpu: GpuOptions = field(default_factory=GpuOptions)
    run_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.input_size is not None:
            h, w = self.input_size
            if h < 32 or w < 32:
                raise ConfigError(f"input_size: expected at least 32x32; received {self.input_size}")
            object.__setattr__(self, "input_size", (int(h), int(w)))
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads: expected a positive integer or None; received {self.threads!r}")
        providers = tuple(self.providers)
        if isinstance(self.providers, str) or [p for p in ONNX_PROVIDER_ORDER if p in providers] != list(providers):
            raise ConfigError(
                f"providers: expected a subsequence of {', '.join(ONNX_PROVIDER_ORDER)} (each once, in that order); "
                f"received {self.providers!r}"
            )
        object.__setattr__(self, "providers", providers)
        if not isinstance(self.gpu, GpuOptions):
            raise ConfigError(f"gpu: expected GpuOptions; received {type(self.gpu).__name__}")
        if self.run_dir is not None:
            object.__setattr__(self, "run_dir", Path(self.run_dir))
            # refuse a cache folder that leaves the run's folder here, on every machine, not only
            # on one where TensorRT happens to be available
            self.gpu.engine_cache_dir(self.run_dir)


def _is_identity(q) -> bool:
    """True when quantising 0..255 with ``q`` maps every value to itself."""
    if q.zero_point != 0:
        return False
    x = np.arange(256, dtype=np.float32)
    return bool(np.array_equal(np.round(x / np.float32(q.scale)), x))


class Backend(ABC):
    """Run one artifact. Inputs are raw RGB NHWC batches (0..255); outputs are keyed by role.

    Subclasses implement :meth:`_load`, :meth:`set_input`, :meth:`invoke_raw`
    and :meth:`_outputs`; the base class handles input casting and
    quantisation from the manifest, so every backend sees the same contract.
    """

    key: ClassVar[str]  # what --backend and the device profiles call it
    formats: ClassVar[tuple[str, ...]]  # the artifact formats it runs
    # its settings; a backend with settings of its own declares a BackendOptions subclass
    options_class: ClassVar[type[BackendOptions]] = BackendOptions

    def __init__(self, manifest: Manifest, options: BackendOptions | None = None) -> None:
        if manifest.format not in self.formats:
            raise ConfigError(
                f"backend {self.key!r} runs formats {list(self.formats)}; manifest {manifest.path} is {manifest.format!r}"
            )
        self.manifest = manifest
        self.options = options or self.options_class()
        # the intra-op thread count the runtime is given
        self.threads: int = self.options.threads or physical_cores()
        self._closed = False
        shape = manifest.input.shape
        if self.options.input_size and len(shape) == 4 and shape[1] > 0 and tuple(shape[1:3]) != self.options.input_size:
            raise ConfigError(
                f"input_size {self.options.input_size}: artifact {manifest.artifact} has a fixed input {shape[1:3]}"
            )
        q = manifest.input.quantization
        # decided once here, not per frame: can raw uint8 frames go in as they are?
        self._identity_input = manifest.input.dtype == "uint8" and q is not None and _is_identity(q)
        self._output_q = {o.role: o.quantization for o in manifest.outputs}
        path = manifest.artifact_path
        if not path.is_file():
            raise ArtifactError(f"expected a model file at {path}; none exists")
        self._load(path)

    # -- subclass API ---------------------------------------------------
    @abstractmethod
    def _load(self, path: Path) -> None: ...

    @abstractmethod
    def set_input(self, batch: np.ndarray) -> None:
        """Copy an already cast/quantised batch into the runtime's input."""

    @abstractmethod
    def invoke_raw(self) -> None:
        """Run the model once on the input last set (the bench's ceiling)."""

    @abstractmethod
    def _outputs(self) -> dict[str, np.ndarray]:
        """Raw outputs keyed by role (still quantised where the artifact is)."""

    def _release(self) -> None:  # pragma: no cover - runtimes free on GC
        pass

    # -- shared logic -----------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        return self.options.input_size or self.manifest.input_size

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Cast or quantise a raw 0..255 NHWC batch to the artifact's input dtype."""
        spec = self.manifest.input
        images = np.asarray(images)
        h, w = self.input_size
        free = len(spec.shape) == 4 and spec.shape[1] < 0 and spec.shape[2] < 0
        if images.ndim != 4 or images.shape[3] != 3 or (not free and images.shape[1:3] != (h, w)):
            want = "(N, H, W, 3)" if free else f"(N, {h}, {w}, 3)"
            raise FrameError(f"expected an {want} batch of RGB images; received {images.shape}")
        if spec.dtype in ("uint8", "int8"):
            q = spec.quantization
            if q is None:
                raise ArtifactError(f"manifest {self.manifest.path}: integer input without quantisation parameters")
            if images.dtype == np.uint8 and self._identity_input:
                # Calibrated on raw 0..255 images, the input scale is ~1 and the
                # zero point 0: quantising would return the same bytes, so skip
                # five passes over the frame.
                return images
            return q.quantize(images.astype(np.float32), np.dtype(spec.dtype))
        return images.astype(np.float32, copy=False)

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run a raw 0..255 NHWC batch; return float32 ``scores`` (N, C) and ``features`` (N, h, w, K)."""
        return self.infer_prepared(self.prepare(images))

    def infer_prepared(self, batch: np.ndarray, dequantize: bool = True) -> dict[str, np.ndarray]:
        """Like :meth:`infer` for a batch :meth:`prepare` already cast (e.g. on the capture thread).

        With ``dequantize=False`` the outputs come as the runtime gives them
        (int8 for a fully quantised artifact); :meth:`output_quantization`
        says how to read them. The detector takes the CAM straight from the
        int8 feature map this way, without a float copy of all of it.
        """
        if self._closed:
            raise ArtifactError("backend is closed")
        self.set_input(batch)
        self.invoke_raw()
        raw = self._outputs()
        if not dequantize:
            return raw
        return {role: self.dequantize(role, arr) for role, arr in raw.items()}

    def output_quantization(self, role: str, arr: np.ndarray):
        """The quantisation of output ``role`` when ``arr`` is still quantised, else None."""
        q = self._output_q.get(role)
        return q if (q is not None and arr.dtype != np.float32) else None

    def dequantize(self, role: str, arr: np.ndarray) -> np.ndarray:
        """Output ``role`` as float32, whatever the runtime gave."""
        q = self.output_quantization(role, arr)
        return q.dequantize(arr) if q is not None else arr.astype(np.float32, copy=False)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

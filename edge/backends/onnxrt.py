"""ONNX artifacts through onnxruntime: TensorRT, then CUDA, then the CPU, whichever this build has.

What edgecam asks onnxruntime for is decided by :func:`provider_plan`, a pure
function of the options, the artifact's format and the providers the
installed build offers, so the Jetson path is tested on machines without a GPU.

* TensorRT gets fp16 (from :class:`~edge.backends.base.GpuOptions`), int8 exactly
  when the artifact is the QDQ ``onnx-int8`` (its Q/DQ nodes carry the scales,
  so no calibration table is given), a workspace limit and an engine cache
  folder inside the run's folder (or an absolute configured one), so that a
  second run loads the engine instead of building it again.
* CUDA gets the device id. The CPU provider is always last.
* After the session is made, the providers it really uses
  (``session.get_providers()``) are logged, and a fall back to the CPU is said
  in one line with its reason.
* With a GPU provider active, the input is bound once per frame to device
  memory (IO binding), and the outputs come back to numpy for the CAM and
  boxes, which stay on the output thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.backends.base import GPU_PROVIDERS, ONNX_PROVIDER_ORDER, Backend, BackendOptions, log
from edge.errors import ArtifactError, BackendUnavailable

CPU = "CPUExecutionProvider"
TENSORRT, CUDA = GPU_PROVIDERS
ENGINE_SUFFIX = ".engine"


@dataclass(frozen=True)
class ProviderPlan:
    """What goes to ``onnxruntime.InferenceSession``, and why.

    Attributes:
        requested: the providers the options asked for, CPU last.
        names: the ones this build offers, in order: ``providers=`` of the session.
        options: one dict per name: ``provider_options=`` of the session.
        skipped: asked for but missing from this build.
        engine_cache: the TensorRT engine cache folder, when TensorRT is asked for and caching is on.
    """

    requested: tuple[str, ...]
    names: tuple[str, ...]
    options: tuple[dict[str, Any], ...]
    skipped: tuple[str, ...]
    engine_cache: Path | None


def provider_plan(options: BackendOptions, artifact_format: str, available: Sequence[str]) -> ProviderPlan:
    """The providers and provider options for ``options`` on a build offering ``available``.

    Example:
        >>> plan = provider_plan(BackendOptions(providers=("CUDAExecutionProvider", "CPUExecutionProvider")),
        ...                      "onnx-fp32", ["CPUExecutionProvider"])
        >>> plan.names, plan.skipped
        (('CPUExecutionProvider',), ('CUDAExecutionProvider',))
    """
    requested = tuple(p for p in options.providers if p != CPU) + (CPU,)
    gpu = options.gpu
    names, opts, skipped = [], [], []
    cache = None
    for name in requested:
        if name != CPU and name not in available:
            skipped.append(name)
            continue
        if name == TENSORRT:
            cache = gpu.engine_cache_dir(options.run_dir)
            o: dict[str, Any] = {
                "device_id": gpu.device_id,
                "trt_fp16_enable": gpu.tensorrt_fp16,
                "trt_int8_enable": artifact_format == "onnx-int8",
                "trt_max_workspace_size": gpu.tensorrt_workspace_mib * 2**20,
                "trt_engine_cache_enable": cache is not None,
            }
            if cache is not None:
                o["trt_engine_cache_path"] = str(cache)
        elif name == CUDA:
            o = {"device_id": gpu.device_id}
        else:
            o = {}
        names.append(name)
        opts.append(o)
    return ProviderPlan(requested, tuple(names), tuple(opts), tuple(skipped), cache)


def fallback_reason(plan: ProviderPlan, active: Sequence[str], available: Sequence[str], version: str) -> str | None:
    """One line saying why the session runs on fewer GPU providers than were asked for; None when it does not."""
    wanted = [p for p in plan.requested if p != CPU]
    missing = [p for p in wanted if p not in active]
    if not missing:
        return None
    on = ", ".join(active)
    not_built = [p for p in missing if p in plan.skipped]
    not_started = [p for p in missing if p not in plan.skipped]
    why = []
    if not_built:
        why.append(
            f"this onnxruntime {version} offers only {', '.join(available)}, not {', '.join(not_built)} "
            "(the PyPI onnxruntime wheel is CPU-only; a Jetson needs NVIDIA's onnxruntime-gpu, see docs/devices/jetson.md)"
        )
    if not_started:
        why.append(
            f"{', '.join(not_started)} {'is' if len(not_started) == 1 else 'are'} in this build but the session did not "
            "start them (CUDA, cuDNN or TensorRT libraries missing or of another version; onnxruntime's own message "
            "is above, run with -v for more)"
        )
    head = "fell back to the CPU" if list(active) == [CPU] else f"runs on {on} without {', '.join(missing)}"
    return f"{head}: {'; '.join(why)}"


@dataclass(frozen=True)
class EngineCacheState:
    """The TensorRT engine files in the cache folder when the session was made, and now."""

    folder: Path
    engines_before: tuple[str, ...]
    engines_now: tuple[str, ...]

    @property
    def written(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.engines_now) - set(self.engines_before)))

    @property
    def state(self) -> str:
        """``built`` (new engines written), ``reused`` (engines there, none new) or ``empty``."""
        if self.written:
            return "built"
        return "reused" if self.engines_before else "empty"

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "state": self.state, "engines_before": len(self.engines_before),
                "engines_now": len(self.engines_now), "written": list(self.written)}


def _engines(folder: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in folder.glob(f"*{ENGINE_SUFFIX}"))) if folder.is_dir() else ()


class OnnxRuntimeBackend(Backend):
    key = "onnxruntime"
    formats = ("onnx-fp32", "onnx-int8")

    def _load(self, path: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("the onnxruntime backend needs onnxruntime: pip install 'edgecam[edge]'") from exc
        self._ort = ort
        available = list(ort.get_available_providers())
        plan = provider_plan(self.options, self.manifest.format, available)
        self.plan = plan
        self.engine_cache: Path | None = None
        self._engines_before: tuple[str, ...] = ()
        if plan.engine_cache is not None:
            plan.engine_cache.mkdir(parents=True, exist_ok=True)
            self.engine_cache = plan.engine_cache
            self._engines_before = _engines(plan.engine_cache)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        # onnxruntime's warnings (a provider that failed to start) show with -v
        so.log_severity_level = 2 if log.isEnabledFor(logging.DEBUG) else 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.options.spin_wait else "0")
        self.session_options = so
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=list(plan.names),
                                                provider_options=[dict(o) for o in plan.options])
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            raise ArtifactError(f"could not load ONNX model {path}: {exc} (truncated or not an .onnx file?)") from exc
        self.providers = list(self.session.get_providers())
        self.fallback = fallback_reason(plan, self.providers, available, getattr(ort, "__version__", "?"))
        self._report(path)
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        if self.manifest.input.tensor not in names_in:
            raise ArtifactError(f"{path}: expected input {self.manifest.input.tensor!r}; graph has {names_in}")
        self._out_names = {}
        for spec in self.manifest.outputs:
            if spec.tensor not in names_out:
                raise ArtifactError(f"{path}: expected output {spec.tensor!r}; graph has {names_out}")
            self._out_names[spec.role] = spec.tensor
        self._roles = list(self._out_names)
        self._fetch = [self._out_names[r] for r in self._roles]
        self._input = None
        self._result: list[np.ndarray] = []
        # IO binding only where a GPU provider runs: the frame goes to device memory once, the
        # outputs come back as numpy. On the CPU a plain run() is as direct and simpler.
        self.io_binding = bool(self.providers) and self.providers[0] != CPU
        self._binding = None
        self._device_input = None
        self._device_key: tuple | None = None
        if self.io_binding:
            self._binding = self.session.io_binding()
            for name in self._fetch:
                self._binding.bind_output(name, "cpu")

    def _report(self, path: Path) -> None:
        gpu_asked = len(self.plan.requested) > 1
        if self.fallback:
            log.warning("onnxruntime: %s %s", path.name, self.fallback)
        detail = ""
        if TENSORRT in self.providers:
            g = self.options.gpu
            detail = (f"; TensorRT fp16 {'on' if g.tensorrt_fp16 else 'off'}, int8 "
                      f"{'on' if self.manifest.format == 'onnx-int8' else 'off'}, workspace {g.tensorrt_workspace_mib} MiB, "
                      f"engine cache {self.engine_cache or 'off'}")
        log.log(logging.INFO if gpu_asked else logging.DEBUG, "onnxruntime: %s runs on %s (asked for %s)%s",
                path.name, ", ".join(self.providers), ", ".join(self.plan.requested), detail)

    def engine_cache_state(self) -> EngineCacheState | None:
        """Engines in the cache folder at load and now; None when TensorRT caches nothing here."""
        if self.engine_cache is None or TENSORRT not in self.providers:
            return None
        return EngineCacheState(self.engine_cache, self._engines_before, _engines(self.engine_cache))

    def set_input(self, batch: np.ndarray) -> None:
        batch = np.ascontiguousarray(batch)
        if self._binding is None:
            self._input = batch
            return
        key = (batch.shape, batch.dtype.str)
        if self._device_input is not None and key == self._device_key and hasattr(self._device_input, "update_inplace"):
            self._device_input.update_inplace(batch)  # same device buffer, one host-to-device copy
            return
        g = self.options.gpu
        self._device_input = self._ort.OrtValue.ortvalue_from_numpy(batch, "cuda", g.device_id)
        self._binding.bind_ortvalue_input(self.manifest.input.tensor, self._device_input)
        self._device_key = key

    def invoke_raw(self) -> None:
        if self._binding is None:
            self._result = self.session.run(self._fetch, {self.manifest.input.tensor: self._input})
        else:
            self.session.run_with_iobinding(self._binding)
            self._result = []

    def _outputs(self) -> dict[str, np.ndarray]:
        if self._binding is not None:
            return dict(zip(self._roles, self._binding.copy_outputs_to_cpu()))
        return dict(zip(self._roles, self._result))

    def _release(self) -> None:
        self._binding = None
        self._device_input = None
        self.session = None


__all__ = ["ONNX_PROVIDER_ORDER", "EngineCacheState", "OnnxRuntimeBackend", "ProviderPlan", "fallback_reason",
           "provider_plan"]

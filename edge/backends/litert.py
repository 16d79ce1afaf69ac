"""TFLite artifacts through LiteRT, tflite-runtime or tf.lite.

This module is the one place that knows the three interpreter packages:
``ai_edge_litert`` (current), ``tflite_runtime`` (older Pi images) and
``tensorflow.lite`` (only if TensorFlow happens to be installed).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from edge.backends.base import Backend, log
from edge.errors import ArtifactError, BackendUnavailable

_INTERPRETER_MODULES = (
    "ai_edge_litert.interpreter",
    "tflite_runtime.interpreter",
    "tensorflow.lite",
)


def interpreter_module():
    """Return the first importable interpreter module, in order of preference."""
    tried = []
    for name in _INTERPRETER_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            tried.append(f"{name} ({exc.__class__.__name__})")
    raise BackendUnavailable(
        "the litert backend needs a TFLite interpreter; tried " + ", ".join(tried)
        + ". Install one: pip install 'edgecam[edge]' (ai-edge-litert)"
    )


class LiteRTBackend(Backend):
    key = "litert"
    formats = ("tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8")

    def _load(self, path: Path) -> None:
        mod = interpreter_module()
        self.runtime = mod.__name__.split(".")[0]
        kwargs = {"model_path": str(path), "num_threads": self.threads}
        if not self.options.xnnpack and hasattr(mod, "OpResolverType"):
            kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = mod.Interpreter(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(f"could not load TFLite model {path}: {exc} (truncated or not a .tflite file?)") from exc
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise ArtifactError(f"{path} has no signature; edgecam binds outputs by signature name")
        key = self.manifest.signature or next(iter(signatures))
        if key not in signatures:
            raise ArtifactError(f"{path}: expected signature {key!r}; artifact has {list(signatures)}")
        runner = self.interpreter.get_signature_runner(key)
        in_details = runner.get_input_details()
        out_details = runner.get_output_details()
        in_name = self.manifest.input.tensor
        if in_name not in in_details:
            raise ArtifactError(f"{path}: expected input {in_name!r} in signature; found {list(in_details)}")
        self._in_index = in_details[in_name]["index"]
        self._out_index = {}
        for spec in self.manifest.outputs:
            if spec.tensor not in out_details:
                raise ArtifactError(f"{path}: expected output {spec.tensor!r} in signature; found {list(out_details)}")
            self._out_index[spec.role] = out_details[spec.tensor]["index"]
        shape = tuple(int(s) for s in in_details[in_name]["shape"])
        # The runner keeps views into the interpreter's buffers, which forbid
        # resizing; indices are all we keep from it.
        del runner, in_details, out_details
        want = (1, *self.input_size, 3)
        if shape != want:
            self.interpreter.resize_tensor_input(self._in_index, list(want), strict=False)
        self.interpreter.allocate_tensors()
        self._shape = want
        log.debug("litert: %s via %s, threads=%s", path.name, self.runtime, self.threads)

    def set_input(self, batch: np.ndarray) -> None:
        if batch.shape != self._shape:
            # Batches (tiles) and other sizes reuse the same artifact: its height
            # and width are free; re-planning happens only when the shape changes.
            self.interpreter.resize_tensor_input(self._in_index, list(batch.shape), strict=False)
            self.interpreter.allocate_tensors()
            self._shape = batch.shape
        self.interpreter.set_tensor(self._in_index, batch)

    def invoke_raw(self) -> None:
        self.interpreter.invoke()

    def _outputs(self) -> dict[str, np.ndarray]:
        return {role: self.interpreter.get_tensor(i) for role, i in self._out_index.items()}

    def _release(self) -> None:
        self.interpreter = None

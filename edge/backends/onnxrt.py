"""ONNX artifacts through onnxruntime, with execution providers in order of preference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.backends.base import Backend, log
from edge.errors import ArtifactError, BackendUnavailable


class OnnxRuntimeBackend(Backend):
    key = "onnxruntime"
    formats = ("onnx-fp32", "onnx-int8")

    def _load(self, path: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("the onnxruntime backend needs onnxruntime: pip install 'edgecam[edge]'") from exc
        available = set(ort.get_available_providers())
        providers = []
        for p in self.options.providers:
            if p in available:
                providers.append(p)
            else:
                log.warning("onnxruntime: %s is not available in this build (has %s); skipping it", p, sorted(available))
        if "CPUExecutionProvider" not in providers:
            providers.append("CPUExecutionProvider")
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.options.spin_wait else "0")
        self.session_options = so
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            raise ArtifactError(f"could not load ONNX model {path}: {exc} (truncated or not an .onnx file?)") from exc
        self.providers = self.session.get_providers()
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

    def set_input(self, batch: np.ndarray) -> None:
        self._input = np.ascontiguousarray(batch)

    def invoke_raw(self) -> None:
        self._result = self.session.run(self._fetch, {self.manifest.input.tensor: self._input})

    def _outputs(self) -> dict[str, np.ndarray]:
        return dict(zip(self._roles, self._result))

    def _release(self) -> None:
        self.session = None

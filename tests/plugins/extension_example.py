"""A third party's extension in one file: a backend, a frame source, a sink and an export format.

Nothing in edgecam names this module. A distribution declares it in its
packaging metadata (tests/edge/test_plugins.py writes that metadata into a
temporary folder), and ``edgecam run`` then offers ``--backend onnx-counting``,
``--source ramp:N`` and ``--sink csv``; ``edgecam export --formats onnx-ort-basic``
writes the format, device profiles may name it, and the backend runs it.

The module loads on a device: it imports edge/ only at the top. The format's
converter imports export/ (TensorFlow, tf2onnx) when it is called.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from edge.backends.onnxrt import OnnxRuntimeBackend
from edge.formats import FormatExporter, FormatSpec, Gates
from edge.sinks import Sink
from edge.sources import FrameSource


class CountingOnnxBackend(OnnxRuntimeBackend):
    """onnxruntime, counting the model's invocations (a stand-in for a vendor runtime)."""

    key = "onnx-counting"
    formats = ("onnx-fp32", "onnx-ort-basic")
    invocations = 0

    def invoke_raw(self) -> None:
        type(self).invocations += 1
        super().invoke_raw()


class RampSource(FrameSource):
    """``n`` 64x64 frames; a red square grows from nothing to half the frame."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.fps = 10.0

    def _open(self) -> None:
        self.i = 0

    def _read(self) -> np.ndarray | None:
        if self.i >= self.n:
            return None
        side, self.i = self.i * 32 // max(self.n - 1, 1), self.i + 1
        frame = np.full((64, 64, 3), 30, np.uint8)
        frame[:side, :side] = (255, 0, 0)
        return frame

    def __repr__(self) -> str:
        return f"RampSource(n={self.n})"


def ramp_source(spec: str, size=None, fps=None) -> RampSource:
    """``ramp`` (10 frames) or ``ramp:N``."""
    _, _, n = spec.partition(":")
    return RampSource(int(n) if n else 10)


class CsvScoreSink(Sink):
    """One CSV row per frame: frame, label, score."""

    name = "csv"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(["frame", "label", "score"])

    def _write(self, frame_rgb, result, record) -> None:
        for label, score in record.scores.items():
            self._csv.writerow([record.frame, label, score])

    def _close(self) -> None:
        self._file.close()


def csv_sink(out_dir: Path, arg: str | None) -> CsvScoreSink:
    return CsvScoreSink(Path(out_dir) / (arg or "scores.csv"))


def ort_basic(onnx_fp32: bytes) -> bytes:
    """The graph with onnxruntime's basic optimisations (constant folding, redundant nodes) applied ahead of time."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(Path(folder) / "optimised.onnx")
        ort.InferenceSession(onnx_fp32, so, providers=["CPUExecutionProvider"])
        return (Path(folder) / "optimised.onnx").read_bytes()


def _convert_ort_basic(spec: FormatSpec, ctx):
    from export.converters import Conversion, onnx_essentials, onnx_fp32_graph
    from export.onnx_format import embed_metadata

    optimised = ort_basic(onnx_fp32_graph(ctx))  # the float graph edgecam's onnx-fp32 row converts, shared
    return Conversion(embed_metadata(optimised, onnx_essentials(spec, ctx)),
                      {"opset": ctx.options.opset, "optimised_by": "onnxruntime ORT_ENABLE_BASIC"})


def _describe_onnx(content: bytes, ctx):
    from export.onnx_format import describe

    return describe(content)


ORT_BASIC_EXPORTER = FormatExporter(_convert_ort_basic, _describe_onnx)
# a float format: held to the same gates as edgecam's onnx-fp32
ORT_BASIC = FormatSpec("onnx-ort-basic", "model-ort-basic.onnx", "onnx", needs_calibration=False,
                       gates=Gates(max_abs_score_diff=1e-4, min_agreement=0.999, min_cam_correlation=0.999),
                       exporter=f"{__name__}:ORT_BASIC_EXPORTER")

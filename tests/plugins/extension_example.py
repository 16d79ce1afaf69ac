"""A third party's extension in one file: a backend, a frame source and a sink.

Nothing in edgecam names this module. A distribution declares it in its
packaging metadata (tests/edge/test_plugins.py writes that metadata into a
temporary folder), and ``edgecam run`` then offers ``--backend onnx-counting``,
``--source ramp:N`` and ``--sink csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from edge.backends.onnxrt import OnnxRuntimeBackend
from edge.sinks import Sink
from edge.sources import FrameSource


class CountingOnnxBackend(OnnxRuntimeBackend):
    """onnxruntime, counting the model's invocations (a stand-in for a vendor runtime)."""

    key = "onnx-counting"
    formats = ("onnx-fp32",)
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

"""edgecam's device runtime: numpy plus one inference runtime (LiteRT or onnxruntime), never TensorFlow.

Example:
    >>> from edge import Detector
    >>> with Detector.from_manifest("runs/demo/export/model-int8.tflite.manifest.json") as det:  # doctest: +SKIP
    ...     result = det.detect(frame_rgb)
    ...     result.scores, result.boxes.xyxy, result.heatmap.shape
"""

from edge.detector import Detector, DetectorOptions, PreparedFrame
from edge.errors import (
    ArtifactError,
    BackendUnavailable,
    ConfigError,
    DataError,
    EdgecamError,
    FrameError,
    ManifestError,
    SourceError,
)
from edge.manifest import Manifest, load_manifest
from edge.results import Boxes, FrameResult

__all__ = [
    "ArtifactError",
    "BackendUnavailable",
    "Boxes",
    "ConfigError",
    "DataError",
    "Detector",
    "DetectorOptions",
    "EdgecamError",
    "FrameError",
    "FrameResult",
    "Manifest",
    "ManifestError",
    "PreparedFrame",
    "SourceError",
    "load_manifest",
]

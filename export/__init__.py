"""Export: TFLite and ONNX artifacts with a manifest each, and the parity report (needs TensorFlow when called).

Example:
    >>> from export import ExportOptions, export_run, verify  # doctest: +SKIP
    >>> export_run("runs/demo/train", "runs/demo/export", ExportOptions(formats=("all",), calib="runs/demo/data/val"))  # doctest: +SKIP
"""

from export.exporter import ExportOptions, export_run, list_formats
from export.verify import verify

__all__ = ["ExportOptions", "export_run", "list_formats", "verify"]

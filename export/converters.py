"""The export side of the format table: how a model becomes each format.

A format's identity (key, file name, gates) is a row of :data:`edge.formats.FORMATS`,
readable on a device; the row's ``exporter`` names one :class:`FormatExporter`
here (``export.converters:TFLITE``) or in a plugin's module. An exporter has a
converter, ``convert(spec, ctx) -> Conversion``, and a describer,
``describe(content, ctx) -> (input, outputs)`` that reads the tensors back out
of the bytes written. :func:`export.exporter.export_run` loops over the rows and
knows no format by name.

A plugin's converter imports TensorFlow (or whatever it needs) inside the
function: its module is also imported on devices to read the format's row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge.formats import FormatExporter, FormatSpec
from edge.manifest import CamSpec, TensorSpec

log = logging.getLogger("edgecam.export")

__all__ = ["ExportContext", "Conversion", "FormatExporter", "TFLITE", "ONNX", "onnx_fp32_graph", "onnx_essentials"]


@dataclass
class ExportContext:
    """What every converter of one ``export_run`` shares.

    Attributes:
        options: the :class:`export.exporter.ExportOptions`.
        info: the run's :class:`training.run.RunInfo`.
        inference: the Keras inference model (``scores``, ``features``; a head's
            ``centres`` and ``sizes``), with free height and width.
        saved: a SavedModel of ``inference`` (what the TFLite converter reads).
        size: (h, w) the manifests declare.
        cam: the dense layer's CAM weights.
        calibration: the calibration images of the int8 formats, or None.
        mixed_plan: ``mixed_plan(key, fp32_onnx)`` chooses the float layers of an
            int8 format (``--int8-float``) and returns the plan; None when not asked.
        cache: results rows share within one export (the fp32 ONNX graph).
    """

    options: Any
    info: Any
    inference: Any
    saved: Path
    size: tuple[int, int]
    cam: CamSpec
    calibration: Any = None
    mixed_plan: Callable[[str, bytes | None], Any] | None = None
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Conversion:
    """A converter's result: the artifact's bytes and what the manifest says about them.

    ``extra`` goes into the manifest's ``extra`` (a ``calibration`` entry is merged
    with the calibration images' figures); ``plan`` is a precision plan when
    int8 layers were kept in float.
    """

    content: bytes
    extra: dict[str, Any] = field(default_factory=dict)
    plan: Any = None


def _mixed(spec: FormatSpec, ctx: ExportContext) -> bool:
    return spec.needs_calibration and ctx.mixed_plan is not None


def _tflite_convert(spec: FormatSpec, ctx: ExportContext) -> Conversion:
    from export import tflite_format

    if _mixed(spec, ctx):
        plan = ctx.mixed_plan(spec.key, None)
        # a mixed artifact keeps float I/O so that a float `features` leaves it unrounded
        return Conversion(plan.content, {"calibration": {"io": "float"}}, plan)
    content = tflite_format.convert(ctx.saved, spec.key, ctx.calibration, ctx.options.io)
    return Conversion(content, {"calibration": {"io": ctx.options.io}} if spec.needs_calibration else {})


def _tflite_describe(content: bytes, ctx: ExportContext) -> tuple[TensorSpec, tuple[TensorSpec, ...]]:
    from export import tflite_format

    return tflite_format.describe(content, ctx.size)


def onnx_fp32_graph(ctx: ExportContext) -> bytes:
    """The float ONNX graph of the run, converted once per export and shared by every ONNX row."""
    if "onnx_fp32" not in ctx.cache:
        from export import onnx_format

        ctx.cache["onnx_fp32"] = onnx_format.convert_fp32(ctx.inference, ctx.options.opset)
    return ctx.cache["onnx_fp32"]


def onnx_essentials(spec: FormatSpec, ctx: ExportContext) -> dict[str, Any]:
    """The contract's essentials an ONNX artifact carries in its own metadata, for tools that see only the file."""
    info = ctx.info
    outputs = {"scores": "scores", "features": "features"}
    if info.head is not None:
        outputs.update(centres="centres", sizes="sizes")
    return {"format": spec.key, "task": str(info.task), "labels": list(info.labels), "negative_label": info.negative_label,
            "thresholds": list(info.thresholds), "input_size": list(ctx.size), "input_range": [0, 255],
            "layout": "NHWC", "color": "RGB", "outputs": outputs, "cam_pooling": ctx.cam.pooling,
            "cam_weights_shape": list(ctx.cam.weights.shape)}


def _onnx_convert(spec: FormatSpec, ctx: ExportContext) -> Conversion:
    from export import onnx_format

    fp32, opts = onnx_fp32_graph(ctx), ctx.options
    plan, extra = None, {"opset": opts.opset}
    if _mixed(spec, ctx):
        plan = ctx.mixed_plan(spec.key, fp32)
        content = plan.content
    elif spec.needs_calibration:
        content = onnx_format.quantize_int8(fp32, ctx.calibration, opts.onnx_calibration, opts.per_channel)
    else:
        content = fp32
    if spec.needs_calibration:
        extra["calibration"] = {"method": opts.onnx_calibration, "per_channel": opts.per_channel}
    return Conversion(onnx_format.embed_metadata(content, onnx_essentials(spec, ctx)), extra, plan)


def _onnx_describe(content: bytes, ctx: ExportContext) -> tuple[TensorSpec, tuple[TensorSpec, ...]]:
    from export import onnx_format

    return onnx_format.describe(content)


TFLITE = FormatExporter(_tflite_convert, _tflite_describe, signature="serving_default")
ONNX = FormatExporter(_onnx_convert, _onnx_describe)

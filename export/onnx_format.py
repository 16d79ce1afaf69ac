"""ONNX artifacts: float32 through tf2onnx, int8 through onnxruntime's static QDQ quantiser."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from edge.errors import ConfigError, DataError
from edge.manifest import TensorSpec
from export.saved import INPUT_NAME

log = logging.getLogger("edgecam.export")

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def convert_fp32(inference, opset: int = 17) -> bytes:
    """tf2onnx with an explicit input signature (Keras 3 models need one), NHWC input kept."""
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec([None, None, None, 3], tf.float32, name=INPUT_NAME)]
    fn = tf.function(lambda image: inference(image, training=False), input_signature=spec)
    model_proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset)
    _name_outputs(model_proto)
    return model_proto.SerializeToString()


def _name_outputs(model) -> None:
    """Give the graph outputs the role names ``scores`` and ``features`` whatever tf2onnx called them."""
    import onnx

    g = model.graph
    for out in list(g.output):
        name = out.name
        role = "scores" if "scores" in name else "features" if "features" in name else None
        if role is None:
            raise ConfigError(f"tf2onnx produced an unexpected output {name!r}; expected scores and features")
        if name == role:
            continue
        g.node.append(onnx.helper.make_node("Identity", [name], [role], name=f"edgecam_{role}"))
        out.name = role
    if len(g.input) != 1 or g.input[0].name != INPUT_NAME:
        raise ConfigError(f"tf2onnx produced inputs {[i.name for i in g.input]}; expected [{INPUT_NAME!r}]")


def quantize_int8(fp32: bytes, calibration, method: str = "minmax", per_channel: bool = True) -> bytes:
    """Static QDQ quantisation with real calibration images (weights int8 per channel, activations uint8)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"--onnx-calibration: expected one of {list(CALIBRATION_METHODS)}; received {method!r}")
    if calibration is None or len(calibration.images) == 0:
        raise DataError("onnx-int8 needs calibration images (--calib DIR); received none")
    images = calibration.images

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(images)

        def get_next(self):
            img = next(self._it, None)
            return None if img is None else {INPUT_NAME: img[None].astype(np.float32)}

    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="edgecam_onnxq_") as tmp:
        src, pre, dst = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32)
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception as exc:  # optional optimisation; quantise the plain graph if it fails
            log.warning("onnx pre-processing skipped: %s", exc)
            pre = src
        with _scale_notes_summarised():
            quantize_static(
                str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=cm,
                extra_options={"CalibTensorRangeSymmetric": False},
            )
        return dst.read_bytes()


class ScaleNoteFilter(logging.Filter):
    """Drops (and counts) onnxruntime's one-line-per-channel notes that it raised a weight scale.

    onnxruntime's quantiser (``qdq_quantizer.py`` and ``onnx_quantizer.py``, as of
    1.32) raises a weight's scale wherever ``input_scale * weight_scale`` would be
    too small an int32 scale for the bias, and says so with a module-level
    ``logging.info("Increased scale[i] for weight ...")``: through the root
    logger, one line per channel (9 for ImageNet MobileNetV2 1.0: channels
    with near-zero weights, 7 of them in ``Conv1``).
    """

    PREFIXES = ("Increased scale", "Increasing scale")

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(self.PREFIXES):
            self.count += 1
            return False
        return True


@contextlib.contextmanager
def _scale_notes_summarised() -> Iterator[ScaleNoteFilter]:
    """Hide the scale notes while quantising, then log one line saying how many there were."""
    root = logging.getLogger()  # where a module-level logging.info() goes
    notes = ScaleNoteFilter()
    root.addFilter(notes)
    try:
        yield notes
    finally:
        root.removeFilter(notes)
        if notes.count:
            log.info("onnxruntime raised %d weight scales so that each bias fits its int32 scale", notes.count)


def embed_metadata(content: bytes, meta: dict) -> bytes:
    """Put the contract's essentials in ONNX ``metadata_props`` (strings)."""
    import onnx

    model = onnx.load_model_from_string(content)
    del model.metadata_props[:]
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key = f"edgecam.{k}"
        p.value = v if isinstance(v, str) else json.dumps(v)
    model.producer_name = "edgecam"
    return model.SerializeToString()


def describe(content: bytes) -> tuple[TensorSpec, tuple[TensorSpec, ...]]:
    import onnx

    model = onnx.load_model_from_string(content)
    types = {1: "float32", 2: "uint8", 3: "int8", 10: "float16"}

    def spec(v, role):
        t = v.type.tensor_type
        shape = tuple(d.dim_value if d.dim_value > 0 else -1 for d in t.shape.dim)
        return TensorSpec(name=v.name, role=role, shape=shape, dtype=types.get(t.elem_type, "float32"), tensor=v.name)

    outs = {o.name: o for o in model.graph.output}
    return spec(model.graph.input[0], "image"), (spec(outs["scores"], "scores"), spec(outs["features"], "features"))

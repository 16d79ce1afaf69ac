"""TFLite artifacts: float32, float16, dynamic-range and full-integer int8."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, DataError
from edge.manifest import Quantization, TensorSpec
from export.saved import INPUT_NAME, SIGNATURE

log = logging.getLogger("edgecam.export")

IO_TYPES = ("uint8", "int8", "float")


def convert(saved_dir: Path, fmt: str, calibration=None, io: str = "uint8") -> bytes:
    """Convert the SavedModel to ``fmt`` (``tflite-fp32|fp16|dynamic|int8``) and return the flatbuffer."""
    import tensorflow as tf

    if io not in IO_TYPES:
        raise ConfigError(f"--io: expected one of {list(IO_TYPES)}; received {io!r}")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_dir), signature_keys=[SIGNATURE])
    if fmt == "tflite-fp32":
        pass
    elif fmt == "tflite-fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif fmt == "tflite-dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "tflite-int8":
        if calibration is None or len(calibration.images) == 0:
            raise DataError("tflite-int8 needs calibration images (--calib DIR); received none")
        images = calibration.images

        def representative():
            for img in images:
                yield [img[None].astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io != "float":
            conv.inference_input_type = tf.uint8 if io == "uint8" else tf.int8
            conv.inference_output_type = tf.uint8 if io == "uint8" else tf.int8
    else:
        raise ConfigError(f"not a TFLite format: {fmt!r}")
    return conv.convert()


def describe(content: bytes, input_size: tuple[int, int]) -> tuple[TensorSpec, tuple[TensorSpec, ...]]:
    """Input and outputs as the artifact's signature states them, with quantisation."""
    from edge.backends.litert import interpreter_module

    interp = interpreter_module().Interpreter(model_content=content)
    runner = interp.get_signature_runner(SIGNATURE)
    ins, outs = runner.get_input_details(), runner.get_output_details()

    def spec(name, d, role):
        scale, zp = d["quantization"]
        q = Quantization(float(scale), int(zp)) if scale else None
        shape = [int(s) for s in d.get("shape_signature", d["shape"])]
        return TensorSpec(name=name, role=role, shape=tuple(shape), dtype=np.dtype(d["dtype"]).name, tensor=name, quantization=q)

    if INPUT_NAME not in ins or set(outs) != {"scores", "features"}:
        raise ConfigError(f"converted model has inputs {list(ins)} and outputs {list(outs)}; expected image -> scores, features")
    return spec(INPUT_NAME, ins[INPUT_NAME], "image"), (spec("scores", outs["scores"], "scores"), spec("features", outs["features"], "features"))

"""TFLite artifacts: float32, float16, dynamic-range and full-integer int8."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, DataError
from edge.manifest import HEAD_ROLES, Quantization, TensorSpec
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

    if INPUT_NAME not in ins or set(outs) not in ({"scores", "features"}, {"scores", "features", *HEAD_ROLES}):
        raise ConfigError(f"converted model has inputs {list(ins)} and outputs {list(outs)}; expected image -> "
                          f"scores, features (and {', '.join(HEAD_ROLES)} with a localisation head)")
    # bound by signature name: the converter renames and reorders the flatbuffer's outputs
    return spec(INPUT_NAME, ins[INPUT_NAME], "image"), tuple(spec(r, outs[r], r) for r in ("scores", "features", *HEAD_ROLES) if r in outs)


MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _ops(content: bytes) -> tuple[list[dict], dict[int, dict], dict[str, str]]:
    """(ops, tensors by index, signature output name -> tensor name) of a flatbuffer.

    ``_get_ops_details`` is private to the interpreter, but it is what
    TensorFlow's own QuantizationDebugger reads the graph with.
    """
    from edge.backends.litert import interpreter_module

    interp = interpreter_module().Interpreter(model_content=content)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    outs = interp.get_signature_runner(SIGNATURE).get_output_details()
    # the runner keys outputs by role; the graph knows them by tensor name
    by_role = {role: tensors[d["index"]]["name"] for role, d in outs.items()}
    return interp._get_ops_details(), tensors, by_role


class TFLiteMixed:
    """TFLite int8 with chosen layers in float, through TensorFlow's QuantizationDebugger.

    The debugger calibrates once; each plan is ``QuantizationDebugOptions(denylisted_nodes=...)``
    then ``get_nondebug_quantized_model()``. The converter's I/O stays float
    (``fully_quantize=False``): the model quantises its input itself, and a float
    ``features`` output leaves the artifact unrounded.
    """

    format = "tflite-int8"

    def __init__(self, saved_dir: Path, calibration_images: np.ndarray, layers, debug_images: int = 32) -> None:
        import tensorflow as tf

        images = calibration_images

        def representative():
            for img in images:
                yield [img[None].astype(np.float32)]

        def debug_set():
            for img in images[:debug_images]:
                yield [img[None].astype(np.float32)]

        self._tf = tf
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_dir), signature_keys=[SIGNATURE])
        self._float = conv.convert()
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        self.debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=debug_set,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(fully_quantize=False))
        ops, tensors, roles = _ops(self.debugger.calibrated_model)
        self.layers = layers
        self.names = _names(layers, roles)
        # denylisted_nodes are op output tensor names
        self._nodes: dict[str, list[str]] = {}
        for op in ops:
            for idx in op["outputs"]:
                name = tensors[idx]["name"]
                layer = self.names.of(name)
                if layer is not None:
                    self._nodes.setdefault(layer, []).append(name)
        self._errors: dict[str, dict[str, float]] | None = None

    def float_artifact(self) -> bytes:
        return self._float

    def quantize(self, float_layers: frozenset[str]) -> bytes:
        nodes = [n for layer in sorted(float_layers) for n in self._nodes.get(layer, [])]
        self.debugger.options = self._tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=nodes or None, fully_quantize=False)
        return self.debugger.get_nondebug_quantized_model()

    def run(self, content: bytes, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return run_tflite(content, images)

    def outputs(self, content: bytes, images: np.ndarray) -> dict[str, np.ndarray]:
        return outputs_tflite(content, images)

    def float_layers_in(self, content: bytes) -> frozenset[str]:
        return frozenset(layer for layer, _, dtype in op_precisions(content, self.layers) if dtype == "float32")

    def tensor_errors(self) -> dict[str, dict[str, float]]:
        """Per layer, the debugger's statistics of (dequantised int8 - float) on the debug images.

        ``rmse_steps`` is the root-mean-square error in units of the tensor's
        own quantisation step: about 0.29 is plain rounding, more is error
        carried in from earlier layers.
        """
        if self._errors is None:
            self.debugger.options = self._tf.lite.experimental.QuantizationDebugOptions(fully_quantize=False)
            self.debugger.run()
            ops, tensors, _ = _ops(self.debugger.get_debug_quantized_model())
            scale = {}
            for t in tensors.values():
                q = t.get("quantization_parameters") or {}
                if len(q.get("scales", [])):
                    scale[t["name"]] = float(q["scales"][0])
            out: dict[str, dict[str, float]] = {}
            for verify_name, stats in self.debugger.layer_statistics.items():
                # NumericVerify/<tensor name>:<index>
                tensor = verify_name[len("NumericVerify/"):].rsplit(":", 1)[0]
                layer = self.names.of(tensor)
                if layer is None:
                    continue
                mse = float(stats["mean_squared_error"])
                s = scale.get(tensor)
                row = {"mse": mse, "max_abs_error": float(stats["max_abs_error"])}
                if s:
                    row["rmse_steps"] = float(np.sqrt(mse) / s)
                row["rank_key"] = row.get("rmse_steps", mse)
                out.setdefault(layer, row)
            self._errors = out
        return self._errors


def _names(layers, roles: dict[str, str]):
    """Layer names for a flatbuffer whose signature outputs are the tensors ``roles`` names."""
    from export.precision import LayerNames, features_layer

    head = next(layer.name for layer in layers if layer.kind == "dense")
    return LayerNames(layers, {roles["features"]: features_layer(layers), roles["scores"]: head})


def op_precisions(content: bytes, layers) -> list[tuple[str, str, str]]:
    """(layer, op, output dtype) of every multiplying op in a flatbuffer, in graph order."""
    ops, tensors, roles = _ops(content)
    names = _names(layers, roles)
    out = []
    for op in ops:
        if op["op_name"] in MAC_OPS:
            t = tensors[op["outputs"][0]]
            layer = names.of(t["name"]) or t["name"]
            out.append((layer, op["op_name"], np.dtype(t["dtype"]).name))
    return out


def run_tflite(content: bytes, images: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(scores, features) as float32 from a flatbuffer on raw 0..255 images, through its signature."""
    out = outputs_tflite(content, images, batch)
    return out["scores"], out["features"]


def outputs_tflite(content: bytes, images: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """Every signature output (scores, features, and a head's centres and sizes) as float32, by role."""
    from edge.backends.litert import interpreter_module

    interp = interpreter_module().Interpreter(model_content=content, num_threads=1)
    runner = interp.get_signature_runner(SIGNATURE)
    ins, outs = runner.get_input_details(), runner.get_output_details()
    spec = ins[INPUT_NAME]
    acc: dict[str, list[np.ndarray]] = {role: [] for role in outs}
    for i in range(0, len(images), batch):
        x = images[i: i + batch].astype(np.float32)
        if spec["dtype"] != np.float32:
            scale, zp = spec["quantization"]
            info = np.iinfo(spec["dtype"])
            x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(spec["dtype"])
        res = runner(**{INPUT_NAME: x})
        for role, parts in acc.items():
            arr = res[role]
            scale, zp = outs[role]["quantization"]
            parts.append((arr.astype(np.float32) - zp) * scale if scale else arr.astype(np.float32))
    return {role: np.concatenate(parts) for role, parts in acc.items()}

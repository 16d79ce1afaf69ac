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
from edge.manifest import HEAD_ROLES, TensorSpec
from export.saved import INPUT_NAME

log = logging.getLogger("edgecam.export")

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")



def _reader(images):
    """An onnxruntime CalibrationDataReader that feeds ``images`` (N, H, W, 3) one at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(images)

        def get_next(self):
            img = next(self._it, None)
            return None if img is None else {INPUT_NAME: img[None].astype(np.float32)}

    return Reader()

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
        role = next((r for r in ("scores", "features", *HEAD_ROLES) if r in name), None)
        if role is None:
            raise ConfigError(f"tf2onnx produced an unexpected output {name!r}; expected scores and features "
                              f"(and {', '.join(HEAD_ROLES)} with a localisation head)")
        if name == role:
            continue
        g.node.append(onnx.helper.make_node("Identity", [name], [role], name=f"edgecam_{role}"))
        out.name = role
    if len(g.input) != 1 or g.input[0].name != INPUT_NAME:
        raise ConfigError(f"tf2onnx produced inputs {[i.name for i in g.input]}; expected [{INPUT_NAME!r}]")


def quantize_int8(fp32: bytes, calibration, method: str = "minmax", per_channel: bool = True,
                  nodes_to_exclude: list[str] | None = None, calib_options: dict | None = None,
                  overrides: dict | None = None) -> bytes:
    """Static QDQ quantisation with real calibration images (weights int8 per channel, activations uint8).

    ``nodes_to_exclude`` stay float; ``calib_options`` go to onnxruntime's
    calibrator itself (``num_bins``, ``num_quantized_bins``, ``percentile``:
    options ``quantize_static`` does not forward); ``overrides`` is
    ``quantize_static``'s ``TensorQuantOverrides`` (e.g. int16 for one tensor).
    """
    with OnnxCalibration(fp32, calibration, method, calib_options) as cal:
        return cal.quantize(per_channel, nodes_to_exclude, overrides)


def _changed_outputs(before: bytes, after: bytes, images: np.ndarray) -> list[str]:
    """Outputs whose shape differs between two graphs on the same images, as ``name: before -> after``.

    onnxruntime's pre-processing (``quant_pre_process``) has been seen, on some
    runs and not others, to drop the Squeeze after a localisation head's
    one-channel centre map, so that the graph gave ``centres`` as (1, 1, h, w, 1).
    """
    a, b = outputs_onnx(before, images), outputs_onnx(after, images)
    return [f"{k}: {a[k].shape} -> {b.get(k, np.empty(0)).shape}" for k in a if a[k].shape != b.get(k, np.empty(0)).shape]


def _changed_ranks(before: bytes, after: bytes) -> list[str]:
    """Declared outputs whose rank differs between two graphs, as ``name: rank -> rank`` (no inference run)."""
    import onnx

    def ranks(content):
        return {o.name: len(o.type.tensor_type.shape.dim) for o in onnx.load_model_from_string(content).graph.output}

    a, b = ranks(before), ranks(after)
    return [f"{k}: {a[k]} -> {b.get(k)}" for k in a if b.get(k) not in (a[k], 0)]


class OnnxCalibration:
    """An fp32 graph pre-processed and calibrated once, quantised as often as asked.

    The ranges go through onnxruntime's own calibration cache
    (``quantize_static(calibration_cache_path=...)``), so trying several sets of
    float nodes does not run the calibration images again.
    """

    def __init__(self, fp32: bytes, calibration, method: str = "minmax", calib_options: dict | None = None) -> None:
        from onnxruntime.quantization import CalibrationMethod
        from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
        from onnxruntime.quantization.shape_inference import quant_pre_process

        if method not in CALIBRATION_METHODS:
            raise ConfigError(f"--onnx-calibration: expected one of {list(CALIBRATION_METHODS)}; received {method!r}")
        if calibration is None or len(calibration.images) == 0:
            raise DataError("onnx-int8 needs calibration images (--calib DIR); received none")
        images = calibration.images


        self.method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                       "percentile": CalibrationMethod.Percentile}[method]
        self._tmp = tempfile.TemporaryDirectory(prefix="edgecam_onnxq_")
        tmp = Path(self._tmp.name)
        src, pre = tmp / "fp32.onnx", tmp / "pre.onnx"
        src.write_bytes(fp32)
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception as exc:  # optional optimisation; quantise the plain graph if it fails
            log.warning("onnx pre-processing skipped: %s", exc)
            pre = src
        changed = _changed_outputs(fp32, pre.read_bytes(), images[:1]) if pre != src else []
        if changed:
            log.warning("onnx pre-processing changed the outputs' shapes (%s); quantising the plain graph",
                        "; ".join(changed))
            pre = src
        self.fp32 = fp32
        self.pre = pre
        self.cache = tmp / "ranges.json"
        options = {"symmetric": False, **(calib_options or {})}
        calibrator = create_calibrator(pre, augmented_model_path=str(tmp / "augmented.onnx"),
                                       calibrate_method=self.method, extra_options=options)
        calibrator.collect_data(_reader(images))
        save_tensors_data(calibrator.compute_data(), self.cache)
        del calibrator

    def quantize(self, per_channel: bool = True, nodes_to_exclude: list[str] | None = None,
                 overrides: dict | None = None) -> bytes:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        dst = Path(self._tmp.name) / "int8.onnx"
        extra = {"CalibTensorRangeSymmetric": False}
        if overrides:
            extra["TensorQuantOverrides"] = overrides
        with _scale_notes_summarised():
            quantize_static(
                str(self.pre), str(dst), None, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=self.method,
                nodes_to_exclude=list(nodes_to_exclude or []), calibration_cache_path=str(self.cache),
                extra_options=extra,
            )
        content = dst.read_bytes()
        changed = _changed_ranks(self.fp32, content)
        if changed:
            raise ConfigError(f"onnx-int8: the quantised graph's outputs changed rank ({'; '.join(changed)}); expected "
                              "the float graph's. onnxruntime's graph pre-processing is not always the same: export again")
        return content

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "OnnxCalibration":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    roles = [r for r in ("scores", "features", *HEAD_ROLES) if r in outs]
    return spec(model.graph.input[0], "image"), tuple(spec(outs[r], r) for r in roles)


MAC_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")


class OnnxMixed:
    """ONNX int8 (QDQ) with chosen layers in float: ``quantize_static(nodes_to_exclude=...)``.

    A layer is every node the :class:`export.precision.LayerNames` map gives it
    (its Conv, the batch-norm Mul tf2onnx may leave beside a depthwise Conv,
    its Clip), read on the pre-processed graph that is quantised.
    """

    format = "onnx-int8"

    def __init__(self, calibration: OnnxCalibration, layers, per_channel: bool = True,
                 overrides: dict | None = None, debug_images: np.ndarray | None = None) -> None:
        import onnx

        from export.precision import LayerNames

        self.cal = calibration
        self.per_channel = per_channel
        self.overrides = overrides
        self.layers = layers
        self.names = LayerNames(layers)
        self._nodes: dict[str, list[str]] = {}
        self._output: dict[str, str] = {}  # the tensor a layer hands on: its last node's output
        for node in onnx.load(str(calibration.pre)).graph.node:
            layer = layer_of(node, self.names)
            if layer is not None:
                self._nodes.setdefault(layer, []).append(node.name)
                self._output[layer] = node.output[0]
        self._debug_images = debug_images
        self._errors: dict[str, dict[str, float]] | None = None

    def float_artifact(self) -> bytes:
        return self.cal.fp32

    def quantize(self, float_layers: frozenset[str]) -> bytes:
        nodes = [n for layer in sorted(float_layers) for n in self._nodes.get(layer, [])]
        return self.cal.quantize(self.per_channel, nodes, self.overrides)

    def run(self, content: bytes, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return run_onnx(content, images)

    def outputs(self, content: bytes, images: np.ndarray) -> dict[str, np.ndarray]:
        return outputs_onnx(content, images)

    def float_layers_in(self, content: bytes) -> frozenset[str]:
        return frozenset(layer for layer, _, precision in node_precisions(content, self.layers) if precision == "float")

    def tensor_errors(self) -> dict[str, dict[str, float]]:
        """Per layer, onnxruntime's ``qdq_loss_debug`` SQNR (dB) of the fully quantised graph.

        ``sqnr_local`` compares a tensor before and after its own QDQ pair in the
        int8 graph (what rounding this tensor costs); ``sqnr_cumulative``
        compares the int8 graph's tensor with the float graph's (everything up
        to here). Both are read on the tensor the layer hands on (after its
        activation).
        """
        if self._errors is not None:
            return self._errors
        self._errors = {}
        if self._debug_images is None or not len(self._debug_images):
            return self._errors
        from onnxruntime.quantization.qdq_loss_debug import (
            collect_activations,
            compute_activation_error,
            create_activation_matching,
            modify_model_output_intermediate_tensors,
        )

        images = self._debug_images


        tmp = Path(self.cal._tmp.name)
        qdq = tmp / "debug-int8.onnx"
        qdq.write_bytes(self.quantize(frozenset()))
        acts = {}
        for name, path in (("float", self.cal.pre), ("qdq", qdq)):
            aug = tmp / f"debug-{name}-aug.onnx"
            modify_model_output_intermediate_tensors(str(path), str(aug))
            acts[name] = collect_activations(str(aug), _reader(images))
        errors = compute_activation_error(create_activation_matching(acts["qdq"], acts["float"]))
        for layer, tensor in self._output.items():
            e = errors.get(tensor)
            if not e:
                continue
            row = {"sqnr_local": float(e["qdq_err"])}
            if e.get("xmodel_err") is not None:
                row["sqnr_cumulative"] = float(e["xmodel_err"])
            # lower is worse; the local figure is unreliable where the quantiser
            # folded a ReLU6 into the QDQ pair (it then compares the unclipped tensor)
            row["rank_key"] = -row.get("sqnr_cumulative", row["sqnr_local"])
            self._errors[layer] = row
        return self._errors


def layer_of(node, names) -> str | None:
    """The layer an ONNX node computes: by its name, or for a multiplying node by its weights' name.

    onnxruntime's pre-processing fuses a conv with its batch norm into a node
    named ``Conv__965``; the fused weights keep the layer's name
    (``.../block_16_project_1/convolution/merged_input:0``).
    """
    layer = names.of(node.name)
    if layer is None and node.op_type in MAC_OPS and len(node.input) > 1:
        layer = names.of(node.input[1])
    return layer


def node_precisions(content: bytes, layers) -> list[tuple[str, str, str]]:
    """(layer, op type, ``int8`` or ``float``) of every multiplying node of a QDQ graph, in graph order.

    A node runs in int8 when both its data and its weights come out of a
    DequantizeLinear (onnxruntime then fuses the QDQ pairs into an integer
    kernel); an excluded node keeps float weights and runs in float on the
    dequantised input.
    """
    import onnx

    from export.precision import LayerNames

    names = LayerNames(layers)
    graph = onnx.load_model_from_string(content).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    out = []
    for node in graph.node:
        if node.op_type in MAC_OPS:
            quantised = all(made_by.get(x) == "DequantizeLinear" for x in node.input[:2])
            precision = "int8" if quantised else "float"
            out.append((layer_of(node, names) or node.name, node.op_type, precision))
    return out


def run_onnx(content: bytes, images: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(scores, features) as float32 from an ONNX graph on raw 0..255 images."""
    out = outputs_onnx(content, images, batch)
    return out["scores"], out["features"]


def outputs_onnx(content: bytes, images: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """Every named output (scores, features, and a head's centres and sizes) as float32, by role."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(content, sess_options=so, providers=["CPUExecutionProvider"])
    roles = [o.name for o in sess.get_outputs() if o.name in ("scores", "features", *HEAD_ROLES)]
    acc: dict[str, list[np.ndarray]] = {role: [] for role in roles}
    for i in range(0, len(images), batch):
        for role, arr in zip(roles, sess.run(roles, {INPUT_NAME: images[i: i + batch].astype(np.float32)})):
            acc[role].append(arr)
    return {role: np.concatenate(parts).astype(np.float32) for role, parts in acc.items()}

"""The layers mixed precision chooses among: their Keras names, their multiply-accumulates, and their names inside artifacts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.errors import ConfigError

MAC_KINDS = ("conv", "depthwise", "dense")


@dataclass(frozen=True)
class Layer:
    """A layer that multiplies: its Keras name, kind and multiply-accumulates at the export size."""

    name: str
    kind: str
    macs: int

    def __post_init__(self) -> None:
        if self.kind not in MAC_KINDS:
            raise ConfigError(f"layer {self.name}: expected a kind in {MAC_KINDS}; received {self.kind!r}")


def layer_inventory(model, task: str, input_size: tuple[int, int]) -> tuple[Layer, ...]:
    """The multiplying layers of a trained run's inference graph, in graph order, with MACs at ``input_size``."""
    import keras

    from training.model import BACKBONE, LOGITS, inference_model, is_cell_pooled

    inf = inference_model(model, task, input_size=tuple(input_size))
    backbone = next(layer for layer in inf.layers if layer.name == BACKBONE or isinstance(layer, keras.Model))
    layers = []
    last_cells = 1
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            layers.append(Layer(layer.name, "depthwise", int(h * w * c * kh * kw)))
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1] // layer.groups
            layers.append(Layer(layer.name, "conv", int(h * w * c * kh * kw * cin)))
            last_cells = int(h * w)
    dense = model.get_layer(LOGITS)
    k, c = dense.kernel.shape
    cells = last_cells if is_cell_pooled(model) else 1
    layers.append(Layer(LOGITS, "dense", int(cells * k * c)))
    return tuple(layers)


def features_layer(layers: tuple[Layer, ...]) -> str:
    """The layer whose output is the ``features`` map: the last convolution."""
    return [layer.name for layer in layers if layer.kind != "dense"][-1]


class LayerNames:
    """Maps a node or tensor name inside an artifact to the Keras layer it computes.

    Converters keep Keras layer names inside their own (TFLite:
    ``.../block_3_expand_relu_1/Relu6;.../block_3_expand_1/convolution``;
    tf2onnx: ``.../block_3_expand_BN_1/batchnorm/mul_1``). A layer's batch
    norm and activation count as the layer, and so do the zero padding on an
    expansion's output and the residual add on a projection's output; the
    global pool and the output activation count as the dense head
    (``logits``); the signature's own output names (TFLite calls them
    ``StatefulPartitionedCall:N``) are passed in ``exact``.
    """

    def __init__(self, layers: tuple[Layer, ...], exact: dict[str, str] | None = None) -> None:
        self.layers = tuple(layer.name for layer in layers)
        head = next((layer.name for layer in layers if layer.kind == "dense"), None)
        last = features_layer(layers)
        alias: dict[str, str] = {}
        for name in self.layers:
            for a in (name, f"{name}_BN", f"{name}_bn", f"bn_{name}", f"{name}_relu"):
                alias[a] = name
        alias["out_relu"] = last
        # the rescaling in front of the first convolution goes with it
        alias["preprocess"] = next(layer.name for layer in layers if layer.kind != "dense")
        # An element-wise op on a layer's output goes with the layer: a float
        # layer whose output still passes an int8 PAD (before a strided
        # depthwise) or residual ADD is rounded there all the same.
        for name in self.layers:
            block = re.match(r"(block_\d+)_(expand|project)$", name)
            if block:
                alias[f"{block.group(1)}_{'pad' if block.group(2) == 'expand' else 'add'}"] = name
        if head:
            alias.update(pool=head, scores=head)
        self._alias = alias
        self._exact = dict(exact or {})

    def of(self, name: str) -> str | None:
        for tensor, layer in self._exact.items():
            if name == tensor or name.startswith(tensor + ":") or f"/{tensor}:" in name:
                return layer
        for segment in re.split(r"[/;]", name):
            for candidate in (segment, re.sub(r"_\d+$", "", segment)):
                if candidate in self._alias:
                    return self._alias[candidate]
        return None

    def check(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """``names`` validated against the run's layers; an unknown name fails loudly with the valid ones."""
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            raise ConfigError(f"--int8-float: unknown layer(s) {unknown}; this model's layers are {list(self.layers)}")
        order = {n: i for i, n in enumerate(self.layers)}
        return tuple(sorted(set(names), key=order.__getitem__))


def float_share(layers: tuple[Layer, ...], names) -> float:
    total = sum(layer.macs for layer in layers)
    kept = sum(layer.macs for layer in layers if layer.name in set(names))
    return kept / total if total else 0.0

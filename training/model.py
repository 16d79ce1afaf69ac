"""The classifier: MobileNetV2 backbone, global pooling, dropout, dense logits.

Preprocessing (scale 0..255 to [-1, 1]) is a layer of the model, so the
model and every artifact exported from it take raw RGB. The dense layer
directly after global pooling is what makes the Class Activation Map exact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edge.errors import ConfigError, DataError
from edge.manifest import TASKS, Task

BACKBONE = "backbone"
FEATURES_LAYER = "out_relu"  # the last conv activation of Keras' MobileNetV2
LOGITS = "logits"
POOLINGS = ("max", "avg", "cell")


class WeightsUnavailable(DataError):
    """ImageNet weights were asked for but cannot be obtained on this machine."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the classifier.

    Attributes:
        num_classes: 1 for binary, C for multi-class / multi-label.
        task: ``binary``, ``multiclass`` or ``multilabel``.
        input_size: (height, width); the head is size-invariant, so an
            artifact can later be exported at another size.
        alpha: MobileNetV2 width multiplier.
        weights: ``"imagenet"``, ``None`` or a path to a ``*_no_top.h5`` file.
        pooling: ``max`` or ``avg`` pool the feature map and then apply the
            dense layer; ``cell`` applies the dense layer to every feature
            cell (a 1x1 convolution) and takes the maximum cell logit. With
            ``cell`` the score is the evidence of the best cell, so it means
            the same on a 96-px crop and on a whole 4K frame, and the CAM is
            exactly the logit map that the score is the maximum of.
        dropout: dropout rate before the dense layer.
    """

    num_classes: int = 1
    task: str = Task.BINARY
    input_size: tuple[int, int] = (160, 160)
    alpha: float = 0.35
    weights: str | None = None
    pooling: str = "max"
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task: expected binary, multiclass or multilabel; received {self.task!r}")
        if self.task == Task.BINARY and self.num_classes != 1:
            raise ConfigError(f"binary task: expected num_classes 1 (one logit); received {self.num_classes}")
        if self.task != Task.BINARY and self.num_classes < 2:
            raise ConfigError(f"{self.task} task: expected num_classes >= 2; received {self.num_classes}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling: expected one of {list(POOLINGS)}; received {self.pooling!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: expected a value in [0, 1); received {self.dropout}")
        h, w = self.input_size
        if h < 32 or w < 32:
            raise ConfigError(f"input_size: expected at least 32x32; received {self.input_size}")
        if self.alpha not in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
            raise ConfigError(f"alpha: expected one of 0.35, 0.5, 0.75, 1.0, 1.3, 1.4; received {self.alpha}")
        object.__setattr__(self, "input_size", (int(h), int(w)))
        if isinstance(self.weights, str) and self.weights.lower() in ("none", ""):
            object.__setattr__(self, "weights", None)

    @property
    def activation(self) -> str:
        return "softmax" if self.task == Task.MULTICLASS else "sigmoid"

    @property
    def frozen_batchnorm(self) -> bool:
        """Pretrained backbones keep batch norm in inference mode (fine-tuning lore)."""
        return self.weights is not None


def resolve_weights(weights: str | None, alpha: float) -> str | None:
    """Check a weights argument early and turn it into what Keras accepts."""
    if weights is None:
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(
            f"weights: expected 'imagenet', 'none' or a path to a MobileNetV2 no-top .h5 file; {path} does not exist"
        )
    if alpha != 1.0 and "1.0" in path.name:
        raise ConfigError(f"weights file {path.name} is for alpha 1.0; the model asks for alpha {alpha} (pass --alpha 1.0)")
    return str(path)


def build_backbone(cfg: ModelConfig):
    import keras

    weights = resolve_weights(cfg.weights, cfg.alpha)
    shape = (*cfg.input_size, 3)
    try:
        backbone = keras.applications.MobileNetV2(
            input_shape=shape, alpha=cfg.alpha, include_top=False, weights=weights
        )
    except Exception as exc:
        if weights == "imagenet":
            home = os.environ.get("KERAS_HOME", "~/.keras")
            raise WeightsUnavailable(
                f"could not obtain ImageNet MobileNetV2 weights (download failed: {exc.__class__.__name__}: {exc}). "
                f"This machine may be offline. Pass --weights PATH to a local "
                f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{cfg.alpha}_224_no_top.h5, "
                f"or place it under {home}/models/, or use --weights none."
            ) from exc
        raise
    backbone.name = BACKBONE
    if weights is None:
        # Keras' MobileNetV2 uses batch-norm momentum 0.999, tuned for long
        # ImageNet runs; from scratch on a few hundred steps the moving
        # statistics would lag far behind the weights and wreck validation.
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
    return backbone


def build_classifier(cfg: ModelConfig):
    """The training model: raw RGB in, logits out.

    Example:
        >>> model = build_classifier(ModelConfig(input_size=(96, 96)))  # doctest: +SKIP
        >>> model.output_shape  # doctest: +SKIP
        (None, 1)
    """
    import keras

    inputs = keras.Input(shape=(*cfg.input_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    backbone = build_backbone(cfg)
    # Pretrained batch norm stays in inference mode even when unfrozen, so a
    # small fine-tuning batch does not wreck its statistics.
    feats = backbone(x, training=False) if cfg.frozen_batchnorm else backbone(x)
    if cfg.pooling == "cell":
        # Dense on a 4-D tensor acts on the channel axis of every cell: the
        # logit map, whose maximum is the score (multiple-instance learning).
        x = keras.layers.Dropout(cfg.dropout, name="dropout")(feats)
        cells = keras.layers.Dense(cfg.num_classes, name=LOGITS)(x)
        logits = keras.layers.GlobalMaxPooling2D(name="pool")(cells)
        return keras.Model(inputs, logits, name="edgecam_classifier")
    pool = keras.layers.GlobalMaxPooling2D if cfg.pooling == "max" else keras.layers.GlobalAveragePooling2D
    x = pool(name="pool")(feats)
    x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    logits = keras.layers.Dense(cfg.num_classes, name=LOGITS)(x)
    return keras.Model(inputs, logits, name="edgecam_classifier")


def inference_model(model, task: str = Task.BINARY, input_size: tuple[int, int] | None = None, dynamic: bool = False):
    """Two named outputs for export and CAM: ``scores`` (probabilities) and ``features``.

    The same weights are rewired at ``input_size`` (any size: the head pools
    globally), or with free height and width when ``dynamic``.
    """
    import keras

    trained = model.get_layer(BACKBONE)
    act = "softmax" if task == Task.MULTICLASS else "sigmoid"
    if input_size is None and not dynamic:
        input_size = tuple(model.input_shape[1:3])
    shape = (None, None, 3) if dynamic else (*input_size, 3)
    inputs = keras.Input(shape=shape, name="image")
    x = model.get_layer("preprocess")(inputs)
    if tuple(trained.input_shape[1:]) == shape:
        backbone = trained
    else:
        # A Keras functional backbone has a fixed input shape: rebuild it at the
        # new one and copy the weights (identical layers, so identical order).
        alpha = _alpha_of(trained)
        backbone = keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, include_top=False, weights=None)
        backbone.set_weights(trained.get_weights())
    feats = backbone(x, training=False)
    if is_cell_pooled(model):
        logits = model.get_layer("pool")(model.get_layer(LOGITS)(feats))
    else:
        logits = model.get_layer(LOGITS)(model.get_layer("pool")(feats))
    scores = keras.layers.Activation(act, name="scores")(logits)
    features = keras.layers.Identity(name="features")(feats)
    return keras.Model(inputs, {"scores": scores, "features": features}, name="edgecam_inference")


def _alpha_of(backbone) -> float:
    # The last bottleneck projects to make_divisible(320 * alpha, 8) channels,
    # which is distinct for every width multiplier Keras ships.
    filters = backbone.get_layer("block_16_project").filters
    for alpha in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
        if max(8, int(320 * alpha + 4) // 8 * 8) == filters:
            return alpha
    raise ConfigError(f"cannot tell the MobileNetV2 width multiplier of a backbone whose last block has {filters} filters")


def is_cell_pooled(model) -> bool:
    """True when the dense layer runs on every feature cell before pooling (``pooling="cell"``)."""
    return len(model.get_layer(LOGITS).input.shape) == 4


def cam_weights(model):
    """(weights (K, C), bias (C,), pooling) of the dense layer (after pooling, or per cell)."""
    dense = model.get_layer(LOGITS)
    w, b = dense.get_weights()
    if is_cell_pooled(model):
        return w, b, "cell"
    pooling = "max" if "Max" in type(model.get_layer("pool")).__name__ else "avg"
    return w, b, pooling

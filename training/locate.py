"""A supervised localisation head on the classifier's encoder (``edgecam train DATA --head locate --from-run RUN``).

The classifier run's MobileNetV2 stays frozen. A light decoder reads three of
its feature maps, ``out_relu`` (stride 32), ``block_12_add`` (16) and
``block_5_add`` (8), upsamples with skip connections to stride 8 and predicts
a vessel-centre heatmap (sigmoid, CenterNet focal loss) and box sizes
(``log(side / 8)``, L1 at centre cells); :mod:`edge.locate` draws the targets
and decodes the boxes. Because the encoder is frozen its features are
computed once per training crop and cached, and the decoder trains on the
cache for many epochs: minutes on two cores, not hours.

The combined model (:func:`combined_inference`) keeps the classifier's
``scores`` and CAM ``features`` and adds ``centres`` and ``sizes``, so one
invoke gives the decision, its explanation and located boxes.
"""

from __future__ import annotations

import numpy as np

from edge.errors import ConfigError
from edge.locate import STRIDE

SKIPS = ("block_5_add", "block_12_add", "out_relu")  # strides 8, 16, 32
HEAD = "locate_head"
OUTPUTS = ("centres", "sizes")
PRIOR = 0.01  # initial centre probability (CenterNet's bias init: the sea is mostly empty)


def encoder(classifier, shape=(None, None, 3)):
    """The classifier's MobileNetV2 with its three skip outputs (weights copied, input ``shape``)."""
    import keras

    from training.model import BACKBONE, _alpha_of

    trained = classifier.get_layer(BACKBONE)
    net = keras.applications.MobileNetV2(input_shape=shape, alpha=_alpha_of(trained), include_top=False, weights=None)
    net.set_weights(trained.get_weights())
    return keras.Model(net.input, [net.get_layer(n).output for n in SKIPS], name="encoder")


def build_head(channels: tuple[int, int, int], width: int = 48):
    """The decoder: features at strides 8, 16, 32 in, ``centres`` (h, w, 1) and ``sizes`` (h, w, 2) out at stride 8.

    Each level is projected to ``width`` channels by a 1x1 convolution, the
    coarser one is upsampled (nearest, exact for inputs that are multiples of
    32) and added, then a 3x3 depthwise-separable convolution mixes them.
    """
    import keras
    from keras import layers

    c8, c16, c32 = (keras.Input((None, None, c), name=f"s{s}") for c, s in zip(channels, (8, 16, 32)))

    def proj(x, name):
        return layers.Conv2D(width, 1, activation="relu", name=name)(x)

    def mix(x, name):
        return layers.SeparableConv2D(width, 3, padding="same", activation="relu", name=name)(x)

    x = proj(c32, "p32")
    x = layers.UpSampling2D(2, name="up16")(x)
    x = mix(layers.Add(name="skip16")([x, proj(c16, "p16")]), "mix16")
    x = layers.UpSampling2D(2, name="up8")(x)
    x = mix(layers.Add(name="skip8")([x, proj(c8, "p8")]), "mix8")
    x = mix(x, "mix8b")
    bias = float(-np.log((1 - PRIOR) / PRIOR))
    centres = layers.Conv2D(1, 1, activation="sigmoid", bias_initializer=keras.initializers.Constant(bias),
                            name="centre_logits")(mix(x, "centre_mix"))
    sizes = layers.Conv2D(2, 1, name="size_out")(mix(x, "size_mix"))
    return keras.Model([c8, c16, c32], [centres, sizes], name=HEAD)


def combined_inference(classifier, head, dynamic: bool = True, input_size: tuple[int, int] | None = None):
    """One model, raw RGB in: ``scores`` and ``features`` of the classifier, ``centres`` and ``sizes`` of the head."""
    import keras

    from training.model import LOGITS, is_cell_pooled

    shape = (None, None, 3) if dynamic else (*input_size, 3)
    inputs = keras.Input(shape=shape, name="image")
    x = classifier.get_layer("preprocess")(inputs)
    s8, s16, s32 = encoder(classifier, shape)(x, training=False)
    if is_cell_pooled(classifier):
        logits = classifier.get_layer("pool")(classifier.get_layer(LOGITS)(s32))
    else:
        logits = classifier.get_layer(LOGITS)(classifier.get_layer("pool")(s32))
    centres, sizes = head([s8, s16, s32])
    return keras.Model(inputs, {
        "scores": keras.layers.Activation("sigmoid", name="scores")(logits),
        "features": keras.layers.Identity(name="features")(s32),
        "centres": keras.layers.Identity(name="centres")(centres),
        "sizes": keras.layers.Identity(name="sizes")(sizes),
    }, name="edgecam_locate")


def locate_loss(y_true, y_pred):
    """CenterNet loss: focal loss on the centre heatmap plus L1 on log sizes at centre cells, per vessel.

    ``y_true`` stacks heat, width, height and mask (h, w, 4); ``y_pred`` stacks
    the centre probability and the two sizes (h, w, 3).
    """
    from keras import ops

    heat, size, mask = y_true[..., 0], y_true[..., 1:3], y_true[..., 3]
    p = ops.clip(y_pred[..., 0], 1e-4, 1 - 1e-4)
    pos = ops.cast(heat >= 0.999, "float32")
    focal_pos = -ops.square(1 - p) * ops.log(p) * pos
    focal_neg = -ops.power(1 - heat, 4.0) * ops.square(p) * ops.log(1 - p) * (1 - pos)
    n = ops.maximum(ops.sum(pos), 1.0)
    l1 = ops.sum(ops.abs(y_pred[..., 1:3] - size) * mask[..., None])
    return (ops.sum(focal_pos) + ops.sum(focal_neg) + l1) / n


def training_model(head, dropout: float = 0.0):
    """The head with its two outputs joined, so one loss sees both (Keras fits one output).

    ``dropout`` drops whole feature channels of the cached encoder features
    while training (a frozen encoder's features repeat exactly every epoch,
    so the decoder otherwise learns the crops by heart).
    """
    import keras

    c8, c16, c32 = (keras.Input(t.shape[1:], name=t.name) for t in head.inputs)
    drop = [keras.layers.SpatialDropout2D(dropout, name=f"drop{k}") for k in range(3)] if dropout else None
    feats = [d(x) for d, x in zip(drop, (c8, c16, c32))] if drop else [c8, c16, c32]
    centres, sizes = head(feats)
    return keras.Model([c8, c16, c32], keras.layers.Concatenate(name="joined")([centres, sizes]))


def head_macs(head, input_hw: tuple[int, int]) -> int:
    """Multiply-accumulates of the decoder for a model input of ``input_hw`` (its layers' strides are in their names)."""
    import keras

    total = 0
    for layer in head.layers:
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D)):
            continue
        stride = 32 if "32" in layer.name else 16 if "16" in layer.name else STRIDE
        cells = -(-input_hw[0] // stride) * -(-input_hw[1] // stride)
        cin, cout = int(layer.input.shape[-1]), int(layer.filters)
        kh, kw = layer.kernel_size
        if isinstance(layer, keras.layers.SeparableConv2D):
            total += cells * (cin * kh * kw + cin * cout)
        else:
            total += cells * cin * cout * kh * kw
    return int(total)


def check_channels(classifier) -> tuple[int, int, int]:
    """Channels of the three skip features of a classifier run's encoder."""
    from training.model import BACKBONE

    bb = classifier.get_layer(BACKBONE)
    try:
        return tuple(int(bb.get_layer(n).output.shape[-1]) for n in SKIPS)
    except ValueError as exc:
        raise ConfigError(f"--from-run: expected a MobileNetV2 classifier with layers {list(SKIPS)}; {exc}") from exc


__all__ = ["SKIPS", "OUTPUTS", "STRIDE", "build_head", "combined_inference", "encoder", "head_macs", "locate_loss",
           "training_model"]

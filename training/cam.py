"""Reference heatmaps from Keras, through :mod:`edge.cam`: exact CAM for edgecam's head, Grad-CAM for any conv layer.

The runtime computes CAM in numpy from an artifact's ``features`` output with
:class:`edge.cam.DenseCAM`; the Keras reference uses the same class on the
Keras feature map, so the two differ only in the features. Grad-CAM is one
more :class:`edge.cam.BaseCAM`: its channel weights are averaged gradients,
which only TensorFlow can take, so the gradient probe lives here.
"""

from __future__ import annotations

import numpy as np

from edge.cam import BaseCAM, DenseCAM
from edge.errors import FrameError
from edge.manifest import Task
from training.model import cam_weights, inference_model


def cam_reference(model, images: np.ndarray, class_index: int = 0, task: str = Task.BINARY) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N, C), CAM (N, h, w) un-normalised) from the Keras model.

    CAM = sum_k w[k, c] * F[..., k] (:meth:`edge.cam.DenseCAM.raw`): for a
    global-pooling + dense head the class logit is the pooled CAM plus the
    bias, so this is exact.
    """
    inf = inference_model(model, task, input_size=images.shape[1:3])
    out = inf.predict(images.astype(np.float32), verbose=0)
    w, b, _ = cam_weights(model)
    cam = DenseCAM(w, b)
    return out["scores"], np.stack([cam.raw(f, class_index) for f in out["features"]])


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al., 2017) of one image: channel weights are the mean gradient of each channel.

    ``gradients`` is d(class output) / d(feature map), shaped like the
    feature map ``(h, w, K)``, taken for ``class_index`` (see
    :class:`GradientProbe`). The map is then BaseCAM's: weighted channel sum,
    ReLU, divide by the peak, resize. For a global-pooling + dense head the
    gradient averages to the dense weights over ``h * w`` (average pooling) or
    picks them at each channel's peak cell (max pooling), so the map equals
    :class:`edge.cam.DenseCAM`'s up to a positive factor, which normalising removes.

    Example:
        >>> features, gradients = GradientProbe(model, "out_relu")(images, 0)  # doctest: +SKIP
        >>> GradCAM(gradients[0], 0)(features[0], 0, size=(96, 96)).shape  # doctest: +SKIP
        (96, 96)
    """

    def __init__(self, gradients: np.ndarray, class_index: int) -> None:
        self.gradients = np.asarray(gradients, dtype=np.float32)
        if self.gradients.ndim != 3:
            raise FrameError(f"Grad-CAM gradients: expected an (h, w, K) map; received shape {self.gradients.shape}")
        self.class_index = int(class_index)
        self._weights = self.gradients.mean(axis=(0, 1))

    def channel_weights(self, features: np.ndarray, class_index: int) -> np.ndarray:
        if class_index != self.class_index:
            raise FrameError(f"Grad-CAM: these gradients are of class {self.class_index}; received class index {class_index}")
        if features.shape != self.gradients.shape:
            raise FrameError(f"Grad-CAM: expected a feature map shaped like its gradients {self.gradients.shape}; "
                             f"received {features.shape}")
        return self._weights


class GradientProbe:
    """A conv layer's activation and the gradient of one class output with respect to it, for a Keras model.

    Nested models (a backbone inside the classifier) are searched for
    ``layer_name``; the outer model is then re-run with the nested one
    swapped for a copy that also returns the layer's activation.
    """

    def __init__(self, model, layer_name: str) -> None:
        import keras

        host, layer = _find_layer(model, layer_name)
        if host is model:
            probe = keras.Model(model.inputs, [layer.output, model.outputs[0]])
            self._forward = lambda x: probe(x, training=False)
        else:
            inner = keras.Model(host.inputs, [layer.output, host.outputs[0]])
            self._forward = lambda x: _forward_nested(model, host, inner, x)

    def __call__(self, images: np.ndarray, class_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, h, w, K), gradients (N, h, w, K)) of output ``class_index`` on ``images``."""
        import tensorflow as tf

        x = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
        with tf.GradientTape() as tape:
            feats, out = self._forward(x)
            tape.watch(feats)
            target = out[:, class_index]
        grads = tape.gradient(target, feats)
        return feats.numpy(), grads.numpy()


def _forward_nested(model, host, inner, x):
    """(the layer's activation, the model output): the outer layers in order, ``inner`` in place of ``host``."""
    h, feats = x, None
    for lyr in model.layers[1:]:
        if lyr is host:
            feats, h = inner(h, training=False)
        else:
            h = lyr(h, training=False)
    return feats, h


def grad_cam(model, images: np.ndarray, layer_name: str, class_index: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
    """Grad-CAM heatmaps ``(N, H, W)`` in [0, 1] of any conv layer of any Keras model, at ``size`` (default: the images')."""
    feats, grads = GradientProbe(model, layer_name)(images, class_index)
    size = size or tuple(np.shape(images)[1:3])
    return np.stack([GradCAM(g, class_index)(f, class_index, size) for f, g in zip(feats, grads)])


def _find_layer(model, name: str):
    try:
        return model, model.get_layer(name)
    except ValueError:
        pass
    for lyr in model.layers:
        if hasattr(lyr, "layers"):
            try:
                return lyr, lyr.get_layer(name)
            except ValueError:
                continue
    raise ValueError(f"no layer named {name!r} in {model.name} or its nested models")

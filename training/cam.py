"""Reference heatmaps in TensorFlow: exact CAM for edgecam's head, Grad-CAM for any conv layer.

The runtime computes CAM in numpy from an artifact's ``features`` output; these
are the references the export checks and tests compare it with.
"""

from __future__ import annotations

import numpy as np

from edge.cam import normalise, resize_heatmap
from training.model import cam_weights, inference_model


def cam_reference(model, images: np.ndarray, class_index: int = 0, task: str = "binary") -> tuple[np.ndarray, np.ndarray]:
    """(scores (N, C), CAM (N, h, w) un-normalised) from the Keras model.

    CAM = sum_k w[k, c] * F[..., k]: for a global-pooling + dense head the
    class logit is the pooled CAM plus the bias, so this is exact.
    """
    inf = inference_model(model, task, input_size=images.shape[1:3])
    out = inf.predict(images.astype(np.float32), verbose=0)
    w, _, _ = cam_weights(model)
    cams = np.einsum("nhwk,k->nhw", out["features"], w[:, class_index])
    return out["scores"], cams


def grad_cam(model, images: np.ndarray, layer_name: str, class_index: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., 2017) for any conv layer of any Keras model.

    Channel weights are the spatially averaged gradients of the class output
    with respect to the layer's activation. Nested models (a backbone inside
    the classifier) are searched for ``layer_name``. Returns (N, H, W) in [0, 1].
    """
    import keras
    import tensorflow as tf

    host, layer = _find_layer(model, layer_name)
    if host is model:
        grad_model = keras.Model(model.inputs, [layer.output, model.outputs[0]])

        def forward(x):
            return grad_model(x, training=False)
    else:
        inner = keras.Model(host.inputs, [layer.output, host.outputs[0]])

        def forward(x):
            # Re-run the outer model with the nested backbone swapped for the probe.
            h = x
            feats = out = None
            for lyr in model.layers[1:]:
                if lyr is host:
                    feats, h = inner(h, training=False)
                else:
                    h = lyr(h, training=False)
            out = h
            return feats, out

    x = tf.convert_to_tensor(images.astype(np.float32))
    with tf.GradientTape() as tape:
        feats, out = forward(x)
        tape.watch(feats)
        target = out[:, class_index]
    grads = tape.gradient(target, feats)
    weights = tf.reduce_mean(grads, axis=(1, 2))
    cams = tf.einsum("nhwk,nk->nhw", feats, weights).numpy()
    size = size or images.shape[1:3]
    return np.stack([resize_heatmap(normalise(c), size) for c in cams])


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

"""Grad-CAM is one more edge.cam.BaseCAM: on a dense-logit head it draws DenseCAM's map, and it keeps BaseCAM's contract."""

from __future__ import annotations

import numpy as np
import pytest

from edge.cam import DenseCAM
from edge.errors import FrameError

pytest.importorskip("tensorflow")

SIZE = (12, 16)


def _dense_head_model(pooling: str, nested: bool, seed: int = 0):
    """image -> conv "feats" (ReLU) -> global pooling -> dense "logits" (3 classes), the backbone optionally nested."""
    import keras

    keras.utils.set_random_seed(seed)
    conv = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="feats")
    inputs = keras.Input((*SIZE, 3), name="image")
    if nested:
        inner_in = keras.Input((*SIZE, 3))
        backbone = keras.Model(inner_in, conv(inner_in), name="backbone")
        feats = backbone(inputs)
    else:
        feats = conv(inputs)
    pool = keras.layers.GlobalMaxPooling2D() if pooling == "max" else keras.layers.GlobalAveragePooling2D()
    logits = keras.layers.Dense(3, name="logits")(pool(feats))
    return keras.Model(inputs, logits)


def _images(n: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, *SIZE, 3)).astype(np.float32)


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_grad_cam_on_a_dense_logit_head_is_dense_cam(pooling, nested):
    from training.cam import GradientProbe, grad_cam

    model = _dense_head_model(pooling, nested)
    images = _images()
    w, b = model.get_layer("logits").get_weights()
    dense = DenseCAM(w, b)
    for c in range(3):
        feats, _ = GradientProbe(model, "feats")(images, c)
        expected = np.stack([dense(f, c, size=SIZE) for f in feats])
        assert expected.max() > 0.0  # some map is not all zeros, or the comparison would say nothing
        np.testing.assert_allclose(grad_cam(model, images, "feats", c), expected, atol=1e-5)


def test_grad_cam_keeps_the_base_cam_contract():
    from training.cam import GradCAM, GradientProbe

    model = _dense_head_model("avg", nested=False)
    feats, grads = GradientProbe(model, "feats")(_images(1), 2)
    cam = GradCAM(grads[0], 2)
    raw = cam.raw(feats[0], 2)
    assert raw.shape == feats.shape[1:3] and raw.dtype == np.float32
    heat = cam(feats[0], 2, size=(30, 40))
    assert heat.shape == (30, 40) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and 0.0 < heat.max() <= 1.0  # bilinear samples may fall short of the cell peak
    assert cam(feats[0], 2).max() == 1.0
    assert cam(feats, 2).shape == feats.shape[1:3]  # a batch of one is unwrapped, as for DenseCAM


def test_grad_cam_refuses_another_class_or_another_feature_map():
    from training.cam import GradCAM

    cam = GradCAM(np.ones((3, 4, 5), np.float32), 1)
    with pytest.raises(FrameError, match="class 1; received class index 0"):
        cam(np.ones((3, 4, 5), np.float32), 0)
    with pytest.raises(FrameError, match=r"shaped like its gradients \(3, 4, 5\)"):
        cam(np.ones((3, 4, 6), np.float32), 1)
    with pytest.raises(FrameError, match=r"expected an \(h, w, K\) map"):
        GradCAM(np.ones((4, 5), np.float32), 1)


def test_cam_reference_is_dense_cam_on_the_keras_features():
    from training.cam import cam_reference
    from training.model import ModelConfig, build_classifier, inference_model

    model = build_classifier(ModelConfig(input_size=(32, 32), alpha=0.35, weights="none"))
    images = np.random.default_rng(2).uniform(0.0, 255.0, (2, 32, 32, 3)).astype(np.float32)
    scores, cams = cam_reference(model, images, 0)
    feats = inference_model(model, "binary", input_size=(32, 32)).predict(images, verbose=0)["features"]
    w = model.get_layer("logits").get_weights()[0]
    np.testing.assert_allclose(cams, np.tensordot(feats, w[:, 0], axes=([3], [0])), rtol=1e-5, atol=1e-5)
    assert scores.shape == (2, 1) and np.abs(cams).max() > 0.0


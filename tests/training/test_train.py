"""Training on tiny real data: the loss falls, the sanity check tells a working loop from a broken one, CAM is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow")


def test_run_directory_and_loss_decreases(tiny_run):
    history = json.loads((tiny_run / "history.json").read_text())
    assert len(history) == 4
    assert history[-1]["loss"] < history[0]["loss"]
    for name in ("model.keras", "run.json", "metrics.json", "config.json", "history.json"):
        assert (tiny_run / name).is_file(), name
    for plot in ("learning_curves.png", "roc.png", "pr.png", "confusion.png", "cam_grid.png"):
        assert (tiny_run / "plots" / plot).stat().st_size > 1000, plot
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["threshold_rule"] == "youden"
    assert 0.0 < metrics["threshold"] < 1.0


def _batch(scenes, n=16, size=(48, 48)):
    from training.data import from_folder, load_rgb

    d = from_folder(scenes / "train")
    idx = np.r_[np.nonzero(d.targets[:, 0] == 1)[0][: n // 2], np.nonzero(d.targets[:, 0] == 0)[0][: n // 2]]
    return load_rgb([d.paths[i] for i in idx], size).astype(np.float32), d.targets[idx]


def test_sanity_passes_on_a_working_model(scenes):
    import keras

    from training.lr import overfit_one_batch
    from training.model import ModelConfig, build_classifier

    keras.utils.set_random_seed(0)
    x, y = _batch(scenes)
    model = build_classifier(ModelConfig(input_size=(48, 48), dropout=0.0))
    r = overfit_one_batch(model, x, y, keras.losses.BinaryCrossentropy(from_logits=True), lr=3e-3, max_steps=120)
    assert r["accuracy"] >= 0.99


def test_sanity_fails_when_probabilities_feed_a_from_logits_loss(scenes):
    """The seed's bug: a sigmoid output trained with from_logits=True. Every output is > 0, read as 'ship'."""
    import keras

    from training.lr import SanityError, overfit_one_batch
    from training.model import ModelConfig, build_classifier

    keras.utils.set_random_seed(0)
    x, y = _batch(scenes)
    base = build_classifier(ModelConfig(input_size=(48, 48), dropout=0.0))
    broken = keras.Model(base.input, keras.layers.Activation("sigmoid")(base.output))
    with pytest.raises(SanityError, match="from_logits"):
        overfit_one_batch(broken, x, y, keras.losses.BinaryCrossentropy(from_logits=True), lr=3e-3, max_steps=60)


def test_cam_reference_equals_hand_computed_sum(tiny_run, val_images):
    from training.cam import cam_reference
    from training.model import BACKBONE, cam_weights
    from training.run import load_run

    model, _ = load_run(tiny_run)
    images = val_images[0][:3]
    scores, cams = cam_reference(model, images)
    backbone = model.get_layer(BACKBONE)
    feats = backbone(images.astype(np.float32) / 127.5 - 1.0, training=False).numpy()
    w, b, pooling = cam_weights(model)
    hand = np.zeros(feats.shape[:3], np.float32)
    for k in range(feats.shape[-1]):
        hand += w[k, 0] * feats[..., k]
    np.testing.assert_allclose(cams, hand, rtol=1e-4, atol=1e-4)
    # max pooling head: the logit is w . max_hw(F) + b
    logit = np.einsum("nk,k->n", feats.max(axis=(1, 2)), w[:, 0]) + b[0]
    np.testing.assert_allclose(scores[:, 0], 1 / (1 + np.exp(-logit)), rtol=1e-4, atol=1e-5)
    assert pooling == "max"


def test_grad_cam_on_last_conv_equals_cam_for_this_head(tiny_run, val_images):
    """With global max pooling, d logit / d F[i,j,k] is w_k at each channel's argmax cell and 0 elsewhere,
    so Grad-CAM's channel weights are w_k / (h*w) and its map is the CAM up to a positive factor."""
    from edge.cam import normalise, resize_heatmap
    from training.cam import cam_reference, grad_cam
    from training.run import load_run

    model, _ = load_run(tiny_run)
    images = val_images[0][:3]
    g = grad_cam(model, images, "out_relu")
    _, cams = cam_reference(model, images)
    expected = np.stack([resize_heatmap(normalise(c), (64, 64)) for c in cams])
    np.testing.assert_allclose(g, expected, atol=2e-3)
    inner = grad_cam(model, images, "block_13_expand_relu")  # any conv layer, nested in the backbone
    assert inner.shape == (3, 64, 64) and inner.min() >= 0.0 and inner.max() <= 1.0 + 1e-6


def test_triangular_schedule_values():
    from training.lr import triangular_schedule, triangular_value

    sched = triangular_schedule(1e-4, 1e-3, step_size=10)
    for step, expected in ((0, 1e-4), (5, 5.5e-4), (10, 1e-3), (15, 5.5e-4), (20, 1e-4), (30, 1e-3)):
        assert float(sched(step)) == pytest.approx(expected, rel=1e-5)
        assert triangular_value(step, 1e-4, 1e-3, 10) == pytest.approx(expected)


def test_cosine_schedule_decays_each_phase_to_zero():
    from training.config import TrainConfig
    from training.train import cosine_schedule

    sched = cosine_schedule(1e-4, decay_steps=100)
    for step, expected in ((0, 1e-4), (50, 5e-5), (100, 0.0), (150, 0.0)):
        assert float(sched(step)) == pytest.approx(expected, abs=1e-9)
    assert TrainConfig(data="d", schedule="cosine").schedule == "cosine"


def test_weights_path_errors(tmp_path):
    from edge.errors import ConfigError
    from training.model import WeightsUnavailable, resolve_weights

    with pytest.raises(WeightsUnavailable, match="does not exist"):
        resolve_weights(str(tmp_path / "missing.h5"), 1.0)
    f = tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    f.write_bytes(b"x")
    with pytest.raises(ConfigError, match="alpha 1.0"):
        resolve_weights(str(f), 0.35)
    assert resolve_weights(None, 0.35) is None and resolve_weights("imagenet", 0.35) == "imagenet"


def test_imagenet_download_failure_says_what_to_do(monkeypatch, tmp_path):
    import keras

    from training.model import ModelConfig, WeightsUnavailable, build_backbone

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*a, **k):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(WeightsUnavailable, match="--weights PATH"):
        build_backbone(ModelConfig(weights="imagenet", alpha=1.0))


def test_train_config_rejects_unknown_and_bad():
    from edge.errors import ConfigError
    from training.config import TrainConfig

    with pytest.raises(ConfigError, match="training options accepts keys.*unknown"):
        TrainConfig.from_dict({"data": "x", "epoch": 3})
    with pytest.raises(ConfigError, match="pooling"):
        TrainConfig(data="x", pooling="mean")


def test_distribution_wiring_on_logical_cpus(scenes, tmp_path):
    """Build and fit under MirroredStrategy over two logical CPU devices (the multi-GPU code path)."""
    import subprocess
    import sys

    code = f"""
import os, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from training.config import TrainConfig
from training.train import train
s = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
r = train(TrainConfig(data={str(scenes)!r}, out={str(tmp_path / 'dist')!r}, input_size=(32, 32), epochs=1,
                      batch_size=16, weights=None, verbose=0, max_images=32), strategy=s)
print("REPLICAS", s.num_replicas_in_sync, "AUC", r.metrics["roc_auc"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert "REPLICAS 2" in out.stdout, out.stderr[-3000:]

"""FGSM and PGD on a tiny Keras model, and the --weather maritime training augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import has_module

pytestmark = pytest.mark.skipif(not has_module("tensorflow"), reason="needs TensorFlow (edgecam[train])")


@pytest.fixture(scope="module")
def tiny():
    """A fixed random conv net on raw 0..255 input, logits out, with 16 images and labels."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    rng = np.random.default_rng(0)
    images = rng.integers(20, 235, (16, 16, 16, 3), dtype=np.uint8)
    targets = (rng.random((16, 1)) < 0.5).astype(np.float32)
    return model, images, targets


@pytest.mark.parametrize("eps", [1.0, 4.0, 8.0])
def test_fgsm_raises_the_loss_and_stays_in_its_box(tiny, eps):
    from training.adversarial import fgsm, loss_gradient

    model, images, targets = tiny
    before = images.copy()
    adv = fgsm(model, images, targets, eps)
    assert adv.dtype == np.uint8 and adv.shape == images.shape
    assert np.array_equal(images, before), "the clean batch is not modified"
    assert np.abs(adv.astype(int) - images).max() == int(eps)
    clean_loss, _ = loss_gradient(model, images, targets)
    adv_loss, _ = loss_gradient(model, adv, targets)
    assert adv_loss.mean() > clean_loss.mean()
    assert (adv_loss >= clean_loss - 1e-6).mean() >= 0.9  # a first-order step: up for (almost) every image


def test_pgd_goes_at_least_as_far_up_as_fgsm(tiny):
    from training.adversarial import fgsm, loss_gradient, pgd

    model, images, targets = tiny
    one = loss_gradient(model, fgsm(model, images, targets, 4.0), targets)[0].mean()
    many = pgd(model, images, targets, 4.0, steps=5)
    assert np.abs(many.astype(int) - images).max() <= 4
    assert loss_gradient(model, many, targets)[0].mean() >= one - 1e-4


@pytest.mark.parametrize("eps, steps", [(0.0, 1), (300.0, 1), (2.0, 0)])
def test_bad_attacks_are_refused(tiny, eps, steps):
    from edge.errors import ConfigError
    from training.adversarial import pgd

    model, images, targets = tiny
    with pytest.raises(ConfigError):
        pgd(model, images, targets, eps, steps=steps)
    with pytest.raises(ConfigError):
        pgd(model, images.astype(np.float32), targets, 2.0)


def test_weather_augmentation_keeps_the_batch_and_alters_images():
    import tensorflow as tf

    from training.weather import weather_augmentation

    tf.random.set_seed(1)
    x = tf.constant(np.random.default_rng(0).integers(0, 255, (32, 48, 48, 3)).astype(np.float32))
    out = weather_augmentation("maritime", probability=1.0)(x).numpy()
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255 and np.array_equal(out, np.round(out))
    changed = np.abs(out - x.numpy()).reshape(32, -1).mean(1) > 0.5
    assert changed.mean() >= 0.9
    same = weather_augmentation("maritime", probability=0.0)(x).numpy()
    assert np.array_equal(same, x.numpy())


def test_weather_preset_is_validated():
    from edge.errors import ConfigError
    from training.config import TrainConfig
    from training.weather import weather_augmentation

    with pytest.raises(ConfigError):
        weather_augmentation("storm")
    with pytest.raises(ConfigError):
        TrainConfig(data="d", weather="storm")
    assert TrainConfig(data="d", weather="maritime").to_dict()["weather"] == "maritime"
    assert TrainConfig.from_dict({"data": "d"}).weather == "none"  # configs written before the option load


@pytest.mark.parametrize("n", [0, 1, 3])
def test_weather_augmentation_copes_with_kinds_no_image_drew(n):
    """A batch where some conditions (or all) drew no image: empty parts must not fail."""
    import tensorflow as tf

    from training.weather import weather_augmentation

    x = tf.zeros((n, 40, 40, 3)) + 128.0
    for p in (0.0, 0.5, 1.0):
        assert weather_augmentation("maritime", probability=p)(x).shape == (n, 40, 40, 3)
    graph = tf.function(weather_augmentation("maritime"), input_signature=[tf.TensorSpec((None, 40, 40, 3))])
    assert graph(x).shape == (n, 40, 40, 3)

"""Training augmentation for camera conditions at sea (``edgecam train --weather maritime``).

Each image of a batch is, with probability ``p``, put through one condition
drawn at random with a random strength: sensor noise, a lens blur, haze,
under- or over-exposure, low contrast or JPEG compression. It runs inside the
tf.data pipeline in TensorFlow ops, after the geometric ``--augment`` preset.

The conditions are deliberately not the benchmark's (:mod:`edge.corruptions`):
the blur here is Gaussian where the benchmark's are a lens disk and a motion
streak, the haze is even where the benchmark's fog is patchy, the strengths
are drawn from continuous ranges, and rain and lens droplets are left out
altogether. Training on the benchmark's own functions would measure how well
the model learnt those functions; the report keeps rain and droplets apart
as conditions the augmentation never showed (ImageNet-C asks the same: do
not train on its corruptions).

Example:
    >>> conditions = weather_augmentation("maritime")  # doctest: +SKIP
    >>> ds = ds.map(lambda x, y: (conditions(x), y))  # doctest: +SKIP
"""

from __future__ import annotations

import math

from edge.errors import ConfigError

PRESETS = {
    # probability an image is altered; strengths are fixed per kind below
    "maritime": 0.5,
}
KINDS = ("noise", "blur", "haze", "exposure", "contrast", "jpeg")


def _gaussian_kernel(sigma, radius: int):
    import tensorflow as tf

    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * tf.square(x / sigma))
    return k / tf.reduce_sum(k)


def _blur(x, sigma, radius: int):
    """Separable Gaussian blur of a (B, H, W, 3) batch (B may be 0), mirrored edges."""
    import tensorflow as tf

    k = _gaussian_kernel(sigma, radius)
    pad = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="SYMMETRIC")
    kx = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, 3, 1])
    ky = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, 3, 1])
    out = tf.nn.depthwise_conv2d(pad, kx, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(out, ky, [1, 1, 1, 1], "VALID")


def weather_augmentation(preset: str = "maritime", probability: float | None = None):
    """A function of a float32 (B, H, W, 3) batch in 0..255 that returns it with camera conditions.

    H and W must be known when the graph is built (tf.data gives them after
    the resize); blur sizes scale with the short side, as in the benchmark.
    """
    import tensorflow as tf

    if preset not in PRESETS:
        raise ConfigError(f"weather: expected one of {['none', *PRESETS]}; received {preset!r}")
    p = PRESETS[preset] if probability is None else float(probability)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"weather probability: expected a value in [0, 1]; received {p}")

    def apply(x):
        h, w = x.shape[1], x.shape[2]
        if h is None or w is None:
            raise ConfigError("weather augmentation: expected batches of a fixed height and width")
        conditions = _conditions(h, w)
        b = tf.shape(x)[0]
        u = tf.clip_by_value(x / 255.0, 0.0, 1.0)
        kind = tf.random.uniform([b], 1, len(KINDS) + 1, dtype=tf.int32)
        kind = tf.where(tf.random.uniform([b]) < p, kind, tf.zeros_like(kind))  # 0: left as it is
        # each condition runs only on the images that drew it
        parts = tf.dynamic_partition(u, kind, len(KINDS) + 1)
        where = tf.dynamic_partition(tf.range(b), kind, len(KINDS) + 1)
        outs = [parts[0]] + [tf.cond(tf.shape(part)[0] > 0, lambda f=fn, v=part: f(v), lambda v=part: v)
                             for fn, part in zip(conditions, parts[1:])]
        picked = tf.reshape(tf.dynamic_stitch(where, outs), tf.shape(u))
        return tf.round(tf.clip_by_value(picked, 0.0, 1.0) * 255.0)

    return apply


def _conditions(h: int, w: int) -> tuple:
    """The functions of :data:`KINDS`, in that order, each of a (B, h, w, 3) batch in 0..1 with one strength per image.

    Blur sizes scale with the short side, as in the benchmark.
    """
    import tensorflow as tf

    px = min(h, w) / 224.0
    radius = max(1, int(math.ceil(3 * 3.0 * px)))
    rows = tf.reshape(tf.linspace(0.0, 1.0, h), [1, h, 1, 1])

    def strength(v, lo, hi):  # one random strength per image of this part
        return tf.random.uniform([tf.shape(v)[0], 1, 1, 1], lo, hi)

    def noise(v):
        return v + strength(v, 0.0, 0.15) * tf.random.normal(tf.shape(v))

    def blur(v):  # a mix of a light and a heavy Gaussian blur
        t = strength(v, 0.0, 1.0)
        return (1.0 - t) * _blur(v, 1.0 * px + 0.3, radius) + t * _blur(v, 3.0 * px + 0.3, radius)

    def haze(v):  # thicker toward the top, where a sea camera looks farthest
        transmission = tf.clip_by_value(strength(v, 0.25, 0.9) + 0.3 * rows, 0.0, 1.0)
        return v * transmission + strength(v, 0.7, 0.95) * (1.0 - transmission)

    def exposure(v):  # 0.1x (dusk) to 2.2x (glare)
        return v * tf.exp(strength(v, -2.3, 0.8))

    def contrast(v):
        mean = tf.reduce_mean(v, axis=[1, 2, 3], keepdims=True)
        return mean + (v - mean) * strength(v, 0.15, 0.8)

    def jpeg(v):
        quality = tf.random.uniform([tf.shape(v)[0]], 5, 40, dtype=tf.int32)
        return tf.map_fn(lambda a: tf.image.adjust_jpeg_quality(a[0], a[1]), (v, quality),
                         fn_output_signature=tf.float32)

    return noise, blur, haze, exposure, contrast, jpeg


__all__ = ["KINDS", "PRESETS", "weather_augmentation"]

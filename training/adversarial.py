"""Adversarial perturbations of raw 0..255 images against a Keras logits model: FGSM and PGD.

FGSM (Goodfellow et al., 2015) takes one step of ``eps`` in the direction of
the sign of the loss gradient with respect to the input. PGD (Madry et al.,
2018) takes several smaller steps, each projected back into the ``eps`` box
around the clean image. ``eps`` is in grey levels, since edgecam's models
take raw RGB 0..255 (the scaling is a layer inside the model); results are
rounded to uint8 so the same perturbed images can be sent to every artifact.

Example:
    >>> adv = fgsm(model, images, targets, eps=4.0)  # doctest: +SKIP
    >>> np.abs(adv.astype(int) - images).max()  # doctest: +SKIP
    4
"""

from __future__ import annotations

import numpy as np

from edge.checks import positive_int
from edge.errors import ConfigError
from edge.manifest import Task


def loss_gradient(model, images: np.ndarray, targets: np.ndarray, task: str = Task.BINARY) -> tuple[np.ndarray, np.ndarray]:
    """(per-image loss, gradient of the loss with respect to the float input) of a logits model."""
    import tensorflow as tf

    x = tf.convert_to_tensor(np.asarray(images, np.float32))
    y = tf.convert_to_tensor(np.asarray(targets, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        if task == Task.MULTICLASS:
            loss = tf.nn.softmax_cross_entropy_with_logits(y, logits)
        else:
            loss = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(y, logits), axis=-1)
    return loss.numpy(), tape.gradient(loss, x).numpy()


def _check(images: np.ndarray, eps: float, steps: int) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ConfigError(f"adversarial: expected a uint8 (N, H, W, 3) batch; received {got}")
    if not 0.0 < float(eps) <= 255.0:
        raise ConfigError(f"adversarial: expected eps in (0, 255] grey levels; received {eps!r}")
    positive_int("adversarial steps", steps)


def pgd(model, images: np.ndarray, targets: np.ndarray, eps: float, steps: int = 10, step_size: float | None = None,
        task: str = Task.BINARY, batch_size: int = 64) -> np.ndarray:
    """Projected gradient ascent on the loss inside an L-infinity box of ``eps`` grey levels; uint8 out.

    One step of size ``eps`` is FGSM. The default step for several is
    ``2.5 * eps / steps`` (so the walk can reach the box's edge and move along it).
    """
    _check(images, eps, steps)
    eps = float(eps)
    alpha = eps if steps == 1 else (step_size or 2.5 * eps / steps)
    out = []
    for i in range(0, len(images), batch_size):
        clean = images[i : i + batch_size].astype(np.float32)
        y = targets[i : i + batch_size]
        x = clean.copy()
        for _ in range(steps):
            _, grad = loss_gradient(model, x, y, task)
            x = x + alpha * np.sign(grad)
            x = np.clip(np.clip(x, clean - eps, clean + eps), 0.0, 255.0)
        out.append(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    return np.concatenate(out) if out else images.copy()


def fgsm(model, images: np.ndarray, targets: np.ndarray, eps: float, task: str = Task.BINARY,
         batch_size: int = 64) -> np.ndarray:
    """The fast gradient sign method: one step of ``eps`` grey levels up the loss; uint8 out."""
    return pgd(model, images, targets, eps, steps=1, task=task, batch_size=batch_size)


__all__ = ["fgsm", "loss_gradient", "pgd"]

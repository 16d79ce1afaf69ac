"""Learning-rate tools: triangular cyclical schedule, LR range test, one-batch sanity check."""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger("edgecam.training")


def triangular_schedule(base_lr: float, max_lr: float, step_size: int):
    """Cyclical LR (Smith, 2017): linear up from base to max over ``step_size`` steps, then down."""
    return _triangular_class()(base_lr, max_lr, step_size)


_TRIANGULAR = None


def _triangular_class():
    # Defined on first use so importing this module does not import Keras; registered
    # so a model saved with this schedule loads again.
    global _TRIANGULAR
    if _TRIANGULAR is not None:
        return _TRIANGULAR
    import keras

    @keras.saving.register_keras_serializable(package="edgecam")
    class Triangular(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self, base_lr, max_lr, step_size):
            self.base_lr, self.max_lr, self.step_size = float(base_lr), float(max_lr), int(step_size)

        def __call__(self, step):
            from keras import ops

            step = ops.cast(step, "float32")
            cycle = ops.floor(1 + step / (2 * self.step_size))
            x = ops.abs(step / self.step_size - 2 * cycle + 1)
            return self.base_lr + (self.max_lr - self.base_lr) * ops.maximum(0.0, 1 - x)

        def get_config(self):
            return {"base_lr": self.base_lr, "max_lr": self.max_lr, "step_size": self.step_size}

    _TRIANGULAR = Triangular
    return Triangular


def triangular_value(step: int, base_lr: float, max_lr: float, step_size: int) -> float:
    """The same schedule in plain Python (for tests and plots)."""
    cycle = math.floor(1 + step / (2 * step_size))
    x = abs(step / step_size - 2 * cycle + 1)
    return base_lr + (max_lr - base_lr) * max(0.0, 1 - x)


def lr_range_test(model, dataset, loss, min_lr: float = 1e-6, max_lr: float = 1.0, steps: int = 100,
                  smoothing: float = 0.9) -> dict:
    """Train with an exponentially growing LR; return rates, smoothed losses and a suggestion.

    The suggestion is the rate of steepest descent of the smoothed loss, taken
    before the loss blows up (4x its minimum). Weights are restored afterwards.
    """
    import keras

    saved = model.get_weights()
    opt = keras.optimizers.Adam(min_lr)
    model.compile(optimizer=opt, loss=loss)
    factor = (max_lr / min_lr) ** (1.0 / max(steps - 1, 1))
    rates, losses = [], []
    avg, best = 0.0, math.inf
    it = iter(dataset.repeat())
    for i in range(steps):
        lr = min_lr * factor**i
        opt.learning_rate.assign(lr)
        x, y = next(it)
        value = float(model.train_on_batch(x, y))
        avg = smoothing * avg + (1 - smoothing) * value
        smooth = avg / (1 - smoothing ** (i + 1))
        rates.append(lr)
        losses.append(smooth)
        best = min(best, smooth)
        if not math.isfinite(smooth) or smooth > 4 * best:
            break
    model.set_weights(saved)
    r, l = np.array(rates), np.array(losses)
    if len(r) < 5:
        suggestion = float(r[0]) if len(r) else min_lr
    else:
        grad = np.gradient(l, np.log10(r))
        suggestion = float(r[int(np.argmin(grad[: max(len(grad) - 2, 1)]))])
    return {"lr": r.tolist(), "loss": l.tolist(), "suggested_lr": suggestion}


class SanityError(RuntimeError):
    """The model could not overfit a single batch: the training feedback loop is broken."""


def overfit_one_batch(model, x, y, loss, lr: float = 1e-3, max_steps: int = 150, target: float = 0.99) -> dict:
    """Train on one batch until it is (nearly) memorised, or raise SanityError.

    A healthy model + loss + labels reaches ~100 % on one batch in a few dozen
    steps. When it cannot (probabilities fed to a from-logits loss, labels
    misaligned, a frozen model), no amount of data will help.
    """
    import keras

    saved = model.get_weights()
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    y = np.asarray(y, np.float32)
    acc, step, loss_value = 0.0, 0, float("nan")
    for step in range(1, max_steps + 1):
        loss_value = float(model.train_on_batch(x, y))
        if step % 10 == 0 or step == max_steps:
            out = np.asarray(model(x, training=False))
            if y.shape[1] == 1 or out.shape[1] == y.shape[1] and y.sum(1).max() > 1:
                pred = out > 0.0  # logits: 0 is the 0.5 probability boundary
                acc = float((pred == (y > 0.5)).mean())
            else:
                acc = float((out.argmax(1) == y.argmax(1)).mean())
            if acc >= target:
                break
    model.set_weights(saved)
    result = {"steps": step, "accuracy": acc, "loss": loss_value}
    if acc < target:
        raise SanityError(
            f"sanity check failed: after {step} steps on one batch of {len(x)} the model reaches "
            f"{acc:.1%} (expected >= {target:.0%}); loss {loss_value:.4f}. The feedback loop is broken: "
            "check that the loss takes logits (from_logits=True), that labels match images, and that "
            "the model has trainable weights."
        )
    log.info("sanity: one batch memorised in %d steps (accuracy %.3f)", step, acc)
    return result

"""Training: fine-tune MobileNetV2 into a CAM-ready classifier (needs TensorFlow; imported lazily).

Example:
    >>> from training import TrainConfig, train  # doctest: +SKIP
    >>> result = train(TrainConfig(data="runs/demo/data", weights="none", epochs=3))  # doctest: +SKIP
"""

from training.config import TrainConfig


def train(cfg, **kwargs):
    """Run a training (see :func:`training.train.train`)."""
    from training.train import train as _train

    return _train(cfg, **kwargs)


__all__ = ["TrainConfig", "train"]

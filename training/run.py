"""A finished training run read back: the Keras model and its ``run.json``.

Its own module so that training/evaluate.py (which reads runs) and training/train.py
(which evaluates what it trained) do not import each other.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.errors import DataError

__all__ = ["load_run"]


def load_run(path: str | Path):
    """(keras model, run info) from a run directory or a ``model.keras`` inside one."""
    import keras

    path = Path(path)
    run = path if path.is_dir() else path.parent
    model_path = run / "model.keras" if path.is_dir() else path
    if not model_path.is_file():
        raise DataError(f"expected a trained model at {model_path}; none exists (train first: edgecam train DATA)")
    info_path = run / "run.json"
    if not info_path.is_file():
        raise DataError(f"expected run.json beside {model_path} (labels, task, thresholds); none exists")
    from training.lr import _triangular_class

    _triangular_class()  # registers the cyclical schedule so a model trained with it loads

    return keras.models.load_model(model_path, compile=False), json.loads(info_path.read_text())

"""Shared fixtures: a tiny real model trained on generated scenes, and its exports.

Training and exporting take tens of seconds, so they happen once per session.
Tests that need ``../shared`` (real CIFAR-10 photos, ImageNet weights) skip
with a reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGECAM_SHARED", ROOT.parent / "shared"))
CIFAR = SHARED / "data" / "cifar10"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

TINY_SIZE = (64, 64)


@pytest.fixture(scope="session")
def cifar() -> Path:
    """Real CIFAR-10 photos from ../shared, or skip."""
    if not CIFAR.is_dir():
        pytest.skip(f"needs {CIFAR} (../shared is not beside this checkout)")
    return CIFAR


@pytest.fixture(scope="session")
def imagenet_weights() -> Path:
    """ImageNet MobileNetV2 1.0 no-top weights from ../shared, or skip."""
    if not WEIGHTS.is_file():
        pytest.skip(f"needs {WEIGHTS} (../shared is not beside this checkout)")
    return WEIGHTS


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="session")
def scenes(tmp_path_factory) -> Path:
    """A small generated dataset (folder per class) shared by the session."""
    from edge.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("scenes")
    generate_dataset(root, n_train=96, n_val=48, seed=3)
    return root


@pytest.fixture(scope="session")
def tiny_run(scenes, tmp_path_factory) -> Path:
    """A real MobileNetV2 (alpha 0.35, 64x64) trained for 4 epochs on the scenes (no augmentation: steady loss)."""
    pytest.importorskip("tensorflow")
    from training.config import TrainConfig
    from training.train import train

    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(data=str(scenes), out=str(out), input_size=TINY_SIZE, epochs=4, lr=1e-3, batch_size=16,
                      weights=None, verbose=0, seed=1, augment="none", schedule="constant"))
    return out


@pytest.fixture(scope="session")
def tiny_export(tiny_run, scenes, tmp_path_factory) -> Path:
    """Every format exported from ``tiny_run``, calibrated on generated stills."""
    from export.exporter import ExportOptions, export_run

    out = tmp_path_factory.mktemp("export")
    export_run(tiny_run, out, ExportOptions(formats=("all",), calib=str(scenes / "train"), calib_size=48))
    return out


@pytest.fixture(scope="session")
def val_images(scenes):
    """(images uint8 at TINY_SIZE, binary targets) of the generated validation split."""
    from training.data import from_folder, load_rgb

    d = from_folder(scenes / "val")
    return load_rgb(list(d.paths), TINY_SIZE), d.targets


@pytest.fixture(scope="session")
def keras_outputs(tiny_run, val_images):
    """Keras scores (N, 1) and features (N, h, w, K) on the validation images."""
    from training.model import inference_model
    from training.run import load_run

    model, info = load_run(tiny_run)
    out = inference_model(model, info.task, input_size=TINY_SIZE).predict(val_images[0].astype(np.float32), verbose=0)
    return out["scores"], out["features"]

"""Training options share edge.checks' integer checks: one wording, and floats or bools are refused, not truncated."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import ConfigError


def _train_config(**kw):
    from training.config import TrainConfig

    return TrainConfig(data="data", **kw)


def _demo(**kw):
    from training.demo import DemoOptions

    return DemoOptions(**kw)


def _box(**kw):
    from training.boxtrain import BoxTrainOptions

    return BoxTrainOptions(datasets=("shore",), positive=("sea",), **kw)


def _tiles(**kw):
    from training.tiles import TileOptions

    return TileOptions(**kw)


def _adversarial_steps(steps):
    from training.adversarial import pgd

    return pgd(None, np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 1), np.float32), eps=2.0, steps=steps)


@pytest.mark.parametrize("make, kw, message", [
    (_train_config, {"batch_size": 0}, "batch_size: expected a positive integer; received 0"),
    (_train_config, {"batch_size": 8.0}, "batch_size: expected a positive integer; received 8.0"),
    (_train_config, {"epochs": -1}, "epochs: expected an integer >= 0; received -1"),
    (_train_config, {"patience": 2.5}, "patience: expected an integer >= 0; received 2.5"),
    (_train_config, {"finetune_epochs": True}, "finetune_epochs: expected an integer >= 0; received True"),
    (_train_config, {"lr": 0.0}, "lr, finetune_lr: expected positive rates"),
    (_demo, {"epochs": 0}, "epochs: expected a positive integer or None; received 0"),
    (_demo, {"frames": -3}, "frames: expected a positive integer or None; received -3"),
    (_box, {"mine_frames": -1}, "mine_frames: expected an integer >= 0; received -1"),
    (_box, {"mine_per_frame": 1.5}, "mine_per_frame: expected an integer >= 0; received 1.5"),
    (_box, {"mine_floor": 1.0}, r"mine_floor: expected a score in \(0, 1\)"),
    (_tiles, {"hard_per_box": -1}, "hard_per_box: expected an integer >= 0; received -1"),
])
def test_bad_counts_are_refused_with_the_shared_wording(make, kw, message):
    with pytest.raises(ConfigError, match=message):
        make(**kw)


@pytest.mark.parametrize("make, kw", [
    (_train_config, {"batch_size": 1, "epochs": 0, "finetune_epochs": 0, "patience": 0}),
    (_demo, {"epochs": 1, "frames": 1}),
    (_demo, {}),
    (_box, {"mine_frames": 0, "mine_per_frame": 0}),
    (_tiles, {"positives_per_box": 0, "negatives_per_frame": np.int64(3)}),
])
def test_the_smallest_allowed_counts_pass(make, kw):
    opts = make(**kw)
    for key, value in kw.items():
        assert getattr(opts, key) == value


@pytest.mark.parametrize("steps", [0, 2.0])
def test_adversarial_steps_must_be_a_positive_integer(steps):
    with pytest.raises(ConfigError, match=f"adversarial steps: expected a positive integer; received {steps!r}"):
        _adversarial_steps(steps)

"""LR range test, resume, and evaluate on a Keras run and an artifact with one set of metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow")


def test_lr_range_test_writes_plot_and_suggests_a_rate(scenes, tmp_path):
    from training.checks import find_lr
    from training.config import TrainConfig

    cfg = TrainConfig(data=str(scenes), out=str(tmp_path / "lr"), input_size=(32, 32), batch_size=16, weights=None)
    r = find_lr(cfg, steps=25)
    assert len(r["lr"]) == len(r["loss"]) >= 5
    assert np.all(np.diff(r["lr"]) > 0)  # exponentially increasing
    assert r["lr"][0] <= r["suggested_lr"] <= r["lr"][-1]
    assert (tmp_path / "lr" / "plots" / "lr_finder.png").stat().st_size > 1000
    assert json.loads((tmp_path / "lr" / "lr_finder.json").read_text())["suggested_lr"] == r["suggested_lr"]


def test_resume_continues_from_the_last_epoch(scenes, tmp_path):
    from training.config import TrainConfig
    from training.train import train

    out = tmp_path / "resume"
    base = dict(data=str(scenes), out=str(out), input_size=(32, 32), batch_size=16, weights=None, verbose=0,
                augment="none", max_images=48)
    train(TrainConfig(epochs=1, **base))
    assert json.loads((out / "state.json").read_text())["epoch"] == 1
    train(TrainConfig(epochs=2, **base), resume=True)
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 2
    rows = (out / "history_head.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]  # epoch 0 from the first run, 1 from the resumed one


def test_evaluate_keras_and_fp32_artifact_agree(tiny_run, tiny_export, scenes):
    from training.evaluate import evaluate_path

    from training.data import from_folder, load_rgb
    from training.evaluate import predict_artifact, predict_keras
    from training.run import load_run

    k = evaluate_path(tiny_run, scenes / "val")
    a = evaluate_path(tiny_export / "model-fp32.onnx.manifest.json", scenes / "val")
    model, info = load_run(tiny_run)
    d = from_folder(scenes / "val")
    images = load_rgb(list(d.paths), info.input_size)
    k_probs = predict_keras(model, images, "binary")[:, 0]
    a_probs = predict_artifact(tiny_export / "model-fp32.onnx.manifest.json", images)[:, 0]
    assert np.abs(k_probs - a_probs).max() <= 1e-5  # the same scores, to fp32 rounding
    # Decisions at the training threshold are the same unless a score sits within rounding of it.
    # A 4-epoch tiny model from scratch can score every image within 1e-7 of the others
    # (batch-norm statistics lag); then only the scores above can be compared.
    if np.min(np.abs(k_probs - k["threshold"])) > 1e-5:
        for key in ("accuracy", "balanced_accuracy", "threshold"):
            assert a[key] == pytest.approx(k[key], abs=1e-6), key
        assert k["confusion"] == a["confusion"]
    # ROC AUC ranks scores: fp32 rounding (~1e-6) can only reorder near-ties, which a
    # 4-epoch tiny model may have many of, so it gets a small tolerance instead of equality
    assert a["roc_auc"] == pytest.approx(k["roc_auc"], abs=0.05)
    assert k["threshold_rule"] == "given"  # the training threshold is applied, not re-fitted on this data

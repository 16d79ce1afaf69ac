"""Every export format round-trips through the edge runtime and matches Keras (values, not shapes)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge.manifest import load_manifest

pytestmark = pytest.mark.slow

# format -> (worst |score - keras score| allowed, mean |score - keras score| allowed,
# min mean CAM correlation). Float formats must agree to rounding on every
# image. Quantised formats are held to their mean difference: one image near
# the steep middle of the sigmoid can move far (on CIFAR, fp16 moved one score
# by 0.16). The tiny model is 4 epochs from scratch, so post-training int8 is
# poor here (CAM r about 0.5-0.65, mean |d| about 0.15); a swapped output, a
# wrong scale or a bad binding lands far outside these bounds all the same.
TOLERANCE = {
    "tflite-fp32": (1e-4, 1e-5, 0.999),
    "onnx-fp32": (1e-4, 1e-5, 0.999),
    "tflite-fp16": (0.1, 1e-2, 0.99),
    "tflite-dynamic": (0.5, 5e-2, 0.93),
    "tflite-int8": (1.0, 0.25, 0.3),
    "onnx-int8": (1.0, 0.25, 0.3),
}


def _pearson(a, b):
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.parametrize("fmt", list(TOLERANCE))
def test_artifact_matches_keras(fmt, tiny_export, tiny_run, val_images, keras_outputs):
    from edge.backends import create_backend
    from training.model import cam_weights
    from training.run import load_run

    images, _ = val_images
    k_scores, k_feats = keras_outputs
    manifest = load_manifest(tiny_export / f"model-{fmt.split('-', 1)[1]}.{fmt.split('-')[0]}.manifest.json")
    assert manifest.format == fmt
    with create_backend(manifest) as be:
        out = be.infer(images)
    diff = np.abs(out["scores"] - k_scores)
    w = cam_weights(load_run(tiny_run)[0])[0][:, 0]
    np.testing.assert_allclose(manifest.cam.weights[:, 0], w, rtol=0, atol=0)
    corr = np.mean([_pearson(a @ w, b @ w) for a, b in zip(out["features"], k_feats)])
    max_diff, mean_diff, min_corr = TOLERANCE[fmt]
    print(f"{fmt}: max |dscore| {diff.max():.2e}, mean {diff.mean():.2e}, CAM r {corr:.4f}")
    assert diff.max() <= max_diff and diff.mean() <= mean_diff
    assert corr >= min_corr
    assert out["scores"].shape == k_scores.shape and out["features"].shape == k_feats.shape


def test_tflite_output_order_differs_but_binding_by_name_holds(tiny_export, val_images, keras_outputs):
    """TFLite lists the signature outputs in its own order; the backend binds by name."""
    from ai_edge_litert.interpreter import Interpreter

    from edge.backends import create_backend

    manifest = load_manifest(tiny_export / "model-fp32.tflite.manifest.json")
    interp = Interpreter(model_path=str(manifest.artifact_path))
    listed = interp.get_signature_list()["serving_default"]["outputs"]
    assert listed != ["scores", "features"], "the artifact no longer reorders outputs; this test lost its point"
    with create_backend(manifest) as be:
        out = be.infer(val_images[0][:4])
    np.testing.assert_allclose(out["scores"], keras_outputs[0][:4], atol=1e-4)


def test_swapped_manifest_roles_are_caught(tiny_export, tmp_path):
    """A manifest that maps roles onto the wrong tensors fails loudly on shape, not silently."""
    from edge.detector import Detector
    from edge.errors import EdgecamError

    for f in ("model-fp32.tflite", "model-fp32.tflite.manifest.json"):
        shutil.copy(tiny_export / f, tmp_path / f)
    mp = tmp_path / "model-fp32.tflite.manifest.json"
    d = json.loads(mp.read_text())
    d["outputs"][0]["tensor"], d["outputs"][1]["tensor"] = d["outputs"][1]["tensor"], d["outputs"][0]["tensor"]
    mp.write_text(json.dumps(d))
    with pytest.raises((EdgecamError, ValueError)):
        with Detector.from_manifest(mp) as det:
            det.detect(np.zeros((64, 64, 3), np.uint8))


def test_manifest_carries_the_contract(tiny_export, tiny_run):
    run_info = json.loads((tiny_run / "run.json").read_text())
    for mp in sorted(tiny_export.glob("*.manifest.json")):
        m = load_manifest(mp)
        assert m.labels == tuple(run_info["labels"]) == ("ship",)
        assert m.negative_label == "no_ship"
        assert m.thresholds == tuple(run_info["thresholds"])
        assert {o.role: o.tensor for o in m.outputs} == {"scores": "scores", "features": "features"}
        assert m.input.shape[1:3] == (-1, -1) and m.input.shape[3] == 3  # free height/width
        assert m.cam.pooling == "max" and m.cam.weights.shape == (1280, 1)
        if m.format in ("tflite-int8",):
            assert m.input.dtype == "uint8" and m.input.quantization is not None
            assert m.extra["calibration"]["per_class"] == {"no_ship": 24, "ship": 24}
        assert "tensorflow-cpu" in m.tools or "tensorflow" in m.tools


def test_onnx_metadata_embeds_essentials(tiny_export):
    import onnx

    model = onnx.load(str(tiny_export / "model-fp32.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["edgecam.labels"]) == ["ship"]
    assert props["edgecam.format"] == "onnx-fp32"
    assert json.loads(props["edgecam.outputs"]) == {"scores": "scores", "features": "features"}


def test_artifact_runs_at_another_input_size(tiny_export):
    """Free height/width: one artifact serves the still size and the clip size."""
    from edge.detector import Detector

    frame = np.random.default_rng(0).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    with Detector.from_manifest(tiny_export / "model-int8.tflite.manifest.json", input_size=(96, 160)) as det:
        r = det.detect(frame)
    assert r.heatmap.shape == (180, 320)
    assert 0.0 <= r.scores[0] <= 1.0
